#include "modiff/common/summary.h"

#include <algorithm>
#include <cmath>

namespace modiff {

Summary summarize(const std::vector<double>& values) {
  Summary s;
  s.count = static_cast<long>(values.size());
  if (values.empty()) return s;
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / values.size();
  double sq = 0;
  for (double v : values) sq += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(sq / values.size());
  auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  s.min = *lo;
  s.max = *hi;
  return s;
}

}  // namespace modiff
