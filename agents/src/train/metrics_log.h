#pragma once
// metrics.csv as a run writes it: the sums of each step metric over a logging interval, kept on the device
// (graph-capturable), and one row per interval.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "algos/algorithm.h"

namespace modiff::agents {

class MetricsLog {
 public:
  static constexpr const char* kHeader =
      "step,phase,bc_loss,q_loss,critic_loss,value_loss,q_mean,q_std,eval_guided,eval_unguided,step_ms";

  // Adds the values of consecutive steps in place (part of the steps, so graph-capturable): one
  // stack, one sum and one add for all of them.
  void accumulate(const std::vector<StepMetrics>& steps);
  void count_steps(long n) { count_ += n; }
  // Averages since the last flush as a CSV row without its step_ms (one host sync); throws on a
  // non-finite loss, naming the steps and `ckpt_note` (where the last good checkpoint is).
  std::string flush(long step, const std::string& phase, long first_step, const std::string& ckpt_note);
  const std::string& last_summary() const { return last_; }

 private:
  torch::Tensor sums_;         // [number of metrics the step reports]
  std::vector<int> present_;  // which of the six, in order
  long count_ = 0;
  std::string last_;
};

}  // namespace modiff::agents
