#pragma once
// Benchmark helpers behind `modiff bench`: throughput measurements, the machine
// description that goes with every figure, and the markdown section writer for
// docs/benchmarks.md. Never used by tests: timings are not asserted.
#include <string>
#include <vector>

#include "modiff/envs/env_spec.h"

namespace modiff::bench {

struct EnvBenchRow {
  std::string env;
  int threads = 1;
  int num_envs = 1;
  double steps_per_s = 0;
};

struct EnvBenchOptions {
  std::vector<const envs::EnvSpec*> envs;  // empty: all four
  std::vector<int> thread_counts;          // empty: 1, 2, 4, ... and all cores
  int num_envs = 0;                        // 0: 1 env on 1 thread, then 32 envs per thread
  double seconds = 2.0;
  bool progress = true;                    // one line per configuration on stderr
};

// Runs every (env, thread count) configuration of `modiff bench env`.
std::vector<EnvBenchRow> run_env_benchmark(const EnvBenchOptions& options);

// The markdown table (with speed-up and parallel efficiency against 1 thread).
std::string env_benchmark_markdown(const std::vector<EnvBenchRow>& rows, const std::string& machine);

// Steps `num_envs` envs of a vector env with uniform random actions (auto-reset
// included) for at least `seconds` after a warm-up; returns env-steps per second.
double env_steps_per_second(const envs::EnvSpec& spec, int num_envs, double seconds);

// "CPU model, N cores (host H)".
std::string machine_description();

// Replaces the block between <!-- SECTION begin --> and <!-- SECTION end --> in
// a markdown file (appending it when absent), written atomically.
void record_markdown_section(const std::string& path, const std::string& section, const std::string& body);

}  // namespace modiff::bench
