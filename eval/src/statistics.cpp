#include "modiff/eval/statistics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "modiff/common/error.h"
#include "modiff/common/rng.h"

namespace modiff::eval {

double quantile(std::vector<double> v, double q) {
  if (v.empty()) throw Error("quantile of no values");
  std::sort(v.begin(), v.end());
  const double pos = q * (v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

namespace {

// scipy.stats.trim_mean(x, 0.25): drop int(0.25 n) values from each end.
double interquartile_mean(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t cut = static_cast<size_t>(0.25 * v.size());
  double sum = 0;
  for (size_t i = cut; i < v.size() - cut; ++i) sum += v[i];
  return sum / (v.size() - 2 * cut);
}

}  // namespace

Aggregate aggregate(const std::vector<double>& s) {
  if (s.empty()) throw Error("statistics of no scores");
  Aggregate a;
  a.count = static_cast<int>(s.size());
  a.median = quantile(s, 0.5);
  a.iqr = quantile(s, 0.75) - quantile(s, 0.25);
  a.iqm = interquartile_mean(s);
  a.mean = std::accumulate(s.begin(), s.end(), 0.0) / s.size();
  double sq = 0;
  for (double x : s) sq += (x - a.mean) * (x - a.mean);
  a.std = s.size() > 1 ? std::sqrt(sq / (s.size() - 1)) : 0.0;
  a.min = *std::min_element(s.begin(), s.end());
  a.max = *std::max_element(s.begin(), s.end());
  return a;
}

AggregateWithIntervals aggregate_with_intervals(const std::vector<std::vector<double>>& tasks, int reps, uint64_t seed) {
  if (reps <= 0) throw Error("bootstrap replicates must be positive");
  std::vector<double> pooled;
  for (const auto& t : tasks) {
    if (t.empty()) throw Error("a task with no scores");
    pooled.insert(pooled.end(), t.begin(), t.end());
  }
  AggregateWithIntervals r;
  r.point = aggregate(pooled);
  Rng rng(derive_seed(seed, 0xB007));
  std::vector<double> medians(reps), iqrs(reps), iqms(reps), means(reps), sample(pooled.size());
  for (int b = 0; b < reps; ++b) {
    size_t k = 0;
    for (const auto& t : tasks)
      for (size_t i = 0; i < t.size(); ++i) sample[k++] = t[static_cast<size_t>(rng.uniform01() * t.size())];
    const Aggregate a = aggregate(sample);
    medians[b] = a.median;
    iqrs[b] = a.iqr;
    iqms[b] = a.iqm;
    means[b] = a.mean;
  }
  auto interval = [](const std::vector<double>& v) { return Interval{quantile(v, 0.025), quantile(v, 0.975)}; };
  r.median = interval(medians);
  r.iqr = interval(iqrs);
  r.iqm = interval(iqms);
  r.mean = interval(means);
  return r;
}

double probability_of_improvement(const std::vector<std::vector<double>>& x, const std::vector<std::vector<double>>& y) {
  if (x.size() != y.size() || x.empty()) throw Error("probability of improvement needs the same tasks on both sides");
  double total = 0;
  for (size_t t = 0; t < x.size(); ++t) {
    if (x[t].empty() || y[t].empty()) throw Error("a task with no scores");
    double u = 0;
    for (double a : x[t])
      for (double b : y[t]) u += a > b ? 1.0 : (a == b ? 0.5 : 0.0);
    total += u / (x[t].size() * y[t].size());
  }
  return total / x.size();
}

double relative_change(double a, double b) {
  if (a == 0) return b == 0 ? 0.0 : (b > 0 ? 1 : -1) * std::numeric_limits<double>::infinity();
  return (b - a) / std::abs(a);
}

}  // namespace modiff::eval
