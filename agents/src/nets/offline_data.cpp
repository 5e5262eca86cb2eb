#include "nets/offline_data.h"

#include <algorithm>
#include <cmath>

#include "modiff/common/error.h"

namespace modiff::agents {

Normalizer Normalizer::identity(int dim, torch::Device device) {
  return from(std::vector<float>(dim, 0.f), std::vector<float>(dim, 1.f), device);
}

Normalizer Normalizer::from(const std::vector<float>& mean, const std::vector<float>& std, torch::Device device) {
  Normalizer n;
  n.mean = mean;
  n.std = std;
  const long dim = static_cast<long>(mean.size());
  n.mean_t = torch::tensor(mean).view({1, dim}).to(device);
  n.std_t = torch::tensor(std).view({1, dim}).to(device);
  n.is_identity = true;
  for (long i = 0; i < dim; ++i) n.is_identity = n.is_identity && mean[i] == 0.f && std[i] == 1.f;
  return n;
}

OfflineData::OfflineData(const datasets::Dataset& d, torch::Device dev) : device(dev) {
  obs_dim = d.obs_dim;
  act_dim = d.act_dim;
  const size_t n = d.size();
  const bool has_next = !d.next_observations.empty();
  std::vector<float> o, a, r, no, na, nd;
  for (size_t i = 0; i < n; ++i) {
    const bool last = i + 1 == n;
    if (d.timeouts[i] && !d.terminals[i]) continue;
    if (last && !d.terminals[i]) continue;  // its successor (or next action) is unknown
    o.insert(o.end(), d.observations.begin() + i * obs_dim, d.observations.begin() + (i + 1) * obs_dim);
    a.insert(a.end(), d.actions.begin() + i * act_dim, d.actions.begin() + (i + 1) * act_dim);
    r.push_back(d.rewards[i]);
    const auto& next_source = has_next ? d.next_observations : d.observations;
    const size_t next_row = has_next ? i : std::min(i + 1, n - 1);
    no.insert(no.end(), next_source.begin() + next_row * obs_dim, next_source.begin() + (next_row + 1) * obs_dim);
    if (d.terminals[i] || last) {
      na.insert(na.end(), act_dim, 0.f);
    } else {
      na.insert(na.end(), d.actions.begin() + (i + 1) * act_dim, d.actions.begin() + (i + 2) * act_dim);
    }
    nd.push_back(d.terminals[i] ? 0.f : 1.f);
  }
  size = static_cast<long>(r.size());
  if (size == 0) throw Error("dataset has no usable transitions");

  obs_mean.assign(obs_dim, 0.f);
  obs_std.assign(obs_dim, 0.f);
  for (int k = 0; k < obs_dim; ++k) {
    double sum = 0, sq = 0;
    for (long i = 0; i < size; ++i) sum += o[i * obs_dim + k];
    const double mean = sum / size;
    for (long i = 0; i < size; ++i) sq += std::pow(o[i * obs_dim + k] - mean, 2);
    obs_mean[k] = static_cast<float>(mean);
    obs_std[k] = static_cast<float>(std::max(std::sqrt(sq / size), 1e-3));
  }
  const auto ep = datasets::summarize_episodes(d);
  if (!ep.returns.empty()) {
    min_episode_return = *std::min_element(ep.returns.begin(), ep.returns.end());
    max_episode_return = *std::max_element(ep.returns.begin(), ep.returns.end());
  }

  // One table, the columns side by side: sampling a batch is then one gather kernel instead of six.
  const long width = 2L * obs_dim + 2L * act_dim + 2;
  std::vector<float> table(static_cast<size_t>(size) * width);
  for (long i = 0; i < size; ++i) {
    float* row = table.data() + i * width;
    row = std::copy_n(o.begin() + i * obs_dim, obs_dim, row);
    row = std::copy_n(a.begin() + i * act_dim, act_dim, row);
    *row++ = r[i];
    row = std::copy_n(no.begin() + i * obs_dim, obs_dim, row);
    row = std::copy_n(na.begin() + i * act_dim, act_dim, row);
    *row = nd[i];
  }
  table_ = torch::from_blob(table.data(), {size, width}, torch::kFloat32).clone().to(device);
  const Batch all = columns(table_);
  obs = all.obs;
  act = all.act;
  reward = all.reward;
  next_obs = all.next_obs;
  next_act = all.next_act;
  not_done = all.not_done;
}

Batch OfflineData::columns(const torch::Tensor& table) const {
  Batch b;
  long at = 0;
  auto take = [&](long width) {
    auto column = table.narrow(-1, at, width);
    at += width;
    return column;
  };
  b.obs = take(obs_dim);
  b.act = take(act_dim);
  b.reward = take(1);
  b.next_obs = take(obs_dim);
  b.next_act = take(act_dim);
  b.not_done = take(1);
  return b;
}

Batch OfflineData::rows(const torch::Tensor& index) const {
  Batch b = columns(table_.index_select(0, index));
  b.index = index;
  return b;
}

torch::Tensor OfflineData::sample_index(long batch_size) const {
  return torch::randint(size, {batch_size}, torch::TensorOptions().dtype(torch::kLong).device(device));
}

Batch OfflineData::sample(long batch_size) const { return rows(sample_index(batch_size)); }

}  // namespace modiff::agents
