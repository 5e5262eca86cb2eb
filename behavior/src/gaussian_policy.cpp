#include "modiff/behavior/gaussian_policy.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/common/rng.h"
#include "modiff/envs/env_spec.h"
#include "modiff/torch/fixed_order_gemm.h"
#include "gaussian_policy_impl.h"
#include "modiff/torch/torch_support.h"

namespace modiff::behavior {
namespace {

// y [n, out] = x [n, in] W^T + b for a torch Linear layer's parameters, by the fixed-order product.
void linear_fixed_order(const float* x, int n, const torch::nn::Linear& layer, std::vector<float>& y) {
  const torch::Tensor& w = layer->weight;  // [out, in], contiguous
  const torch::Tensor& b = layer->bias;
  const int64_t out = w.size(0), in = w.size(1);
  y.resize(static_cast<size_t>(n) * out);
  const MatrixView<const float> bias{b.data_ptr<float>(), n, out, 0, 1};
  fixed_order_gemm({x, n, in, in, 1}, {w.data_ptr<float>(), in, out, 1, in}, {y.data(), n, out, out, 1}, &bias, 1.0f,
                   1.0f);
}

void relu_in_place(std::vector<float>& v) {
  for (float& x : v) x = x < 0.0f ? 0.0f : x;  // NaN stays NaN (and is caught as a non-finite action)
}

}  // namespace

GaussianPolicy::GaussianPolicy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GaussianPolicy::GaussianPolicy(GaussianPolicy&&) noexcept = default;
GaussianPolicy& GaussianPolicy::operator=(GaussianPolicy&&) noexcept = default;
GaussianPolicy::~GaussianPolicy() = default;

GaussianPolicy GaussianPolicy::random_init(const std::string& env_id, int hidden, uint64_t seed) {
  const auto& spec = envs::find_env(env_id);
  auto impl = std::make_unique<Impl>();
  impl->info = {spec.id, spec.obs_dim, spec.act_dim, hidden};
  torch::manual_seed(seed);
  impl->actor = Actor(spec.obs_dim, spec.act_dim, hidden);
  impl->actor->eval();
  impl->gen.set_current_seed(seed + 1);
  return GaussianPolicy(std::move(impl));
}

GaussianPolicy GaussianPolicy::load(const std::string& path) {
  std::ifstream meta(path + ".json");
  if (!meta) throw Error(path + ".json: cannot open policy description");
  nlohmann::json j;
  try {
    meta >> j;
  } catch (const std::exception& e) {
    throw Error(path + ".json: not valid JSON (" + e.what() + ")");
  }
  auto impl = std::make_unique<Impl>();
  try {
    impl->info = {j.at("env_id").get<std::string>(), j.at("obs_dim").get<int>(), j.at("act_dim").get<int>(),
                  j.at("hidden").get<int>()};
  } catch (const std::exception& e) {
    throw Error(path + ".json: missing or wrong key (" + e.what() + ")");
  }
  const auto& spec = envs::find_env(impl->info.env_id);
  if (spec.obs_dim != impl->info.obs_dim || spec.act_dim != impl->info.act_dim)
    throw Error(path + ".json: dims " + std::to_string(impl->info.obs_dim) + "/" + std::to_string(impl->info.act_dim) +
                " do not match " + spec.id);
  if (impl->info.hidden <= 0 || impl->info.hidden > 4096) throw Error(path + ".json: bad 'hidden'");
  impl->actor = Actor(impl->info.obs_dim, impl->info.act_dim, impl->info.hidden);
  try {
    torch::load(impl->actor, path);
  } catch (const std::exception& e) {
    throw Error(path + ": cannot load actor weights (corrupt or of another shape)");
  }
  impl->actor->eval();
  return GaussianPolicy(std::move(impl));
}

void GaussianPolicy::save(const std::string& path) const {
  write_atomically(path, [&](const std::string& tmp) {
    torch::serialize::OutputArchive archive;
    impl_->actor->save(archive);
    save_archive(archive, tmp);
  });
  nlohmann::json j = {{"env_id", impl_->info.env_id},
                      {"obs_dim", impl_->info.obs_dim},
                      {"act_dim", impl_->info.act_dim},
                      {"hidden", impl_->info.hidden},
                      {"kind", "sac-actor"}};
  write_text_atomically(path + ".json", j.dump(2) + "\n");
}

const PolicyFileInfo& GaussianPolicy::info() const { return impl_->info; }

void GaussianPolicy::reseed(uint64_t seed) { impl_->gen.set_current_seed(seed); }

void GaussianPolicy::act(const float* observations, int n, double* actions, bool deterministic) {
  torch::NoGradGuard no_grad;
  const int obs_dim = impl_->info.obs_dim, act_dim = impl_->info.act_dim;
  auto obs = torch::from_blob(const_cast<float*>(observations), {n, obs_dim}, torch::kFloat32);
  torch::Tensor a;
  if (deterministic) {
    a = torch::tanh(impl_->actor->forward(obs).first);
  } else {
    a = impl_->actor->sample(obs, impl_->gen).first;
  }
  a = a.contiguous().to(torch::kFloat64);
  std::memcpy(actions, a.data_ptr<double>(), sizeof(double) * n * act_dim);
}

}  // namespace modiff::behavior

namespace modiff::behavior {

void GaussianPolicy::sample_keyed(const float* observations, int n, const uint64_t* keys, double* actions) const {
  torch::NoGradGuard no_grad;
  const ActorImpl& actor = *impl_->actor;
  const int act_dim = impl_->info.act_dim;
  // The calling thread's buffers, kept between calls (one allocation per step cost page faults).
  thread_local std::vector<float> h1, h2, mean, log_std_raw;
  linear_fixed_order(observations, n, actor.fc1, h1);
  relu_in_place(h1);
  linear_fixed_order(h1.data(), n, actor.fc2, h2);
  relu_in_place(h2);
  linear_fixed_order(h2.data(), n, actor.fc_mean, mean);
  linear_fixed_order(h2.data(), n, actor.fc_logstd, log_std_raw);
  for (int r = 0; r < n; ++r) {
    Rng noise(keys[r]);
    for (int k = 0; k < act_dim; ++k) {
      const size_t i = static_cast<size_t>(r) * act_dim + k;
      // SAC's squashed Gaussian (sac_networks.h), in double from here on.
      const double log_std = kLogStdMin + 0.5 * (kLogStdMax - kLogStdMin) * (std::tanh(double(log_std_raw[i])) + 1.0);
      actions[i] = std::tanh(double(mean[i]) + std::exp(log_std) * noise.normal());
    }
  }
}

}  // namespace modiff::behavior
