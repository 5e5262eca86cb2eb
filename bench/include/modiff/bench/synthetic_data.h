#pragma once
// Random transitions shaped like an env's data, for training and evaluation
// benchmarks (speed does not depend on the values): uniform observations and
// actions in [-1, 1], rewards in [0, 3], 1000-step episodes ended by timeouts.
#include <cstdint>

#include "modiff/datasets/d4rl_dataset.h"
#include "modiff/envs/env_spec.h"

namespace modiff::bench {

datasets::Dataset synthetic_dataset(const envs::EnvSpec& env, long rows, uint64_t seed);

}  // namespace modiff::bench
