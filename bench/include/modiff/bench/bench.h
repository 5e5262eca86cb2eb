#pragma once
// Benchmark helpers behind `modiff bench`: throughput measurements, the machine
// description that goes with every figure, and the markdown section writer for
// docs/benchmarks.md. Never used by tests: timings are not asserted.
#include <string>

#include "modiff/envs/env_spec.h"

namespace modiff::bench {

// Steps `num_envs` envs of a vector env with uniform random actions (auto-reset
// included) for at least `seconds` after a warm-up; returns env-steps per second.
double env_steps_per_second(const envs::EnvSpec& spec, int num_envs, double seconds);

// "CPU model, N cores (host H)".
std::string machine_description();

// Replaces the block between <!-- SECTION begin --> and <!-- SECTION end --> in
// a markdown file (appending it when absent), written atomically.
void record_markdown_section(const std::string& path, const std::string& section, const std::string& body);

}  // namespace modiff::bench
