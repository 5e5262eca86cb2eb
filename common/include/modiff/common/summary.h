#pragma once
// Mean, population std, min and max of a sample: what `rollout` and dataset
// summaries print.
#include <vector>

namespace modiff {

struct Summary {
  double mean = 0, std = 0, min = 0, max = 0;
  long count = 0;
};

Summary summarize(const std::vector<double>& values);

}  // namespace modiff
