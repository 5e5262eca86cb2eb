// modiff-env-bench: `modiff bench env` without LibTorch, for machines where only
// the physics libraries are carried (the lent GPU machine: see docs/benchmarks.md).
// Usage: modiff-env-bench [SECONDS] [THREADS,...] [NUM_ENVS] [ENV]
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "modiff/bench/bench.h"

int main(int argc, char** argv) {
  modiff::bench::EnvBenchOptions opt;
  if (argc > 1) opt.seconds = std::atof(argv[1]);
  if (argc > 2) {
    std::stringstream ss(argv[2]);
    for (std::string t; std::getline(ss, t, ',');) opt.thread_counts.push_back(std::atoi(t.c_str()));
  }
  if (argc > 3) opt.num_envs = std::atoi(argv[3]);
  if (argc > 4) opt.envs.push_back(&modiff::envs::find_env(argv[4]));
  if (opt.seconds <= 0) {
    std::fprintf(stderr, "modiff-env-bench: error: SECONDS must be positive\n");
    return 2;
  }
  const auto rows = modiff::bench::run_env_benchmark(opt);
  std::printf("%s", modiff::bench::env_benchmark_markdown(rows, modiff::bench::machine_description()).c_str());
  return 0;
}
