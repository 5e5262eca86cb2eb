#pragma once
// The small CPU training run the evaluator and reproducibility tests start from: 30 steps of networks 32 wide
// (LN-ResNet blocks 64 wide) on batches of 64, quiet.
#include <string>

#include "modiff/agents/train.h"

namespace modiff_test {

inline modiff::agents::TrainOptions tiny_cpu_training(const std::string& algo, const std::string& out) {
  modiff::agents::TrainOptions o;
  o.algo = algo;
  o.steps = 30;
  o.set = {"policy.hidden=32", "guidance.hidden=32", "policy.block_width=64", "batch=64"};
  o.device = "cpu";
  o.quiet = true;
  o.out = out;
  return o;
}

}  // namespace modiff_test
