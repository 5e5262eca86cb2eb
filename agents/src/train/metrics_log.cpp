#include "train/metrics_log.h"

#include <cmath>
#include <sstream>

#include "modiff/common/error.h"

namespace modiff::agents {

void MetricsLog::accumulate(const std::vector<StepMetrics>& steps) {
  std::vector<torch::Tensor> present;
  present_.clear();
  for (const auto& m : steps) {
    const torch::Tensor values[] = {m.bc_loss, m.q_loss, m.critic_loss, m.value_loss, m.q_mean, m.q_std};
    const bool first = present.empty();
    for (int k = 0; k < 6; ++k) {
      if (!values[k].defined()) continue;
      present.push_back(values[k].reshape({}));
      if (first) present_.push_back(k);
    }
  }
  if (present.empty()) return;
  auto sum = torch::stack(present).view({static_cast<long>(steps.size()), -1}).sum(0);
  if (!sums_.defined()) sums_ = torch::zeros_like(sum);
  sums_.add_(sum);
}

std::string MetricsLog::flush(long step, const std::string& phase, long first_step, const std::string& ckpt_note) {
  std::ostringstream row;
  row << step << "," << phase;
  static const char* names[] = {"bc_loss", "q_loss", "critic_loss", "value_loss", "q_mean", "q_std"};
  double host[6];
  bool have[6] = {false, false, false, false, false, false};
  if (sums_.defined()) {
    auto all = sums_.to(torch::kCPU).to(torch::kFloat64);
    for (size_t i = 0; i < present_.size(); ++i) {
      host[present_[i]] = all[static_cast<long>(i)].item<double>();
      have[present_[i]] = true;
    }
  }
  last_.clear();
  for (int k = 0; k < 6; ++k) {
    row << ",";
    if (!have[k]) continue;
    const double v = host[k] / count_;
    if (!std::isfinite(v))
      throw Error(std::string("non-finite ") + names[k] + " between steps " + std::to_string(first_step) + " and " +
                  std::to_string(step) + " of the " + phase + " phase; " + ckpt_note);
    row << v;
    last_ += std::string(" ") + names[k] + " " + std::to_string(v).substr(0, 8);
  }
  if (sums_.defined()) sums_.zero_();
  count_ = 0;
  return row.str();
}

}  // namespace modiff::agents
