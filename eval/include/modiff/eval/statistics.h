#pragma once
// Robust statistics of normalized scores over seeds (docs/statistics.md gives
// every definition). Quartiles interpolate linearly between order statistics
// (numpy's default, Hyndman & Fan type 7); IQM is the 25% trimmed mean
// (scipy.stats.trim_mean(x, 0.25), which rliable uses); std uses n - 1.
#include <cstdint>
#include <vector>

namespace modiff::eval {

// The q-quantile (0 <= q <= 1) with linear interpolation; `values` need not be sorted.
double quantile(std::vector<double> values, double q);

struct Aggregate {
  double median = 0, iqr = 0, iqm = 0, mean = 0, std = 0, min = 0, max = 0;
  int count = 0;
};

// Point statistics of one set of scores (e.g. per-seed means).
Aggregate aggregate(const std::vector<double>& scores);

struct Interval {
  double lo = 0, hi = 0;
};

struct AggregateWithIntervals {
  Aggregate point;
  Interval median, iqr, iqm, mean;  // 95% percentile intervals
};

// Scores grouped by task (stratum). Point statistics pool all tasks' scores;
// intervals come from rliable's stratified bootstrap: each replicate resamples
// every task's scores with replacement within the task, pools them, and
// recomputes the statistic; the interval is the 2.5th and 97.5th percentile of
// the replicates. Deterministic for a given seed.
AggregateWithIntervals aggregate_with_intervals(const std::vector<std::vector<double>>& scores_by_task, int reps,
                                                uint64_t seed);

// P(X > Y): per task the Mann-Whitney U statistic over n_x n_y pairs (ties count
// one half), averaged over tasks. x and y hold the same tasks in the same order.
double probability_of_improvement(const std::vector<std::vector<double>>& x, const std::vector<std::vector<double>>& y);

// (b - a) / |a|; 0 when both are 0, +-infinity when only a is 0.
double relative_change(double a, double b);

}  // namespace modiff::eval
