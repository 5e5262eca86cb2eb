#pragma once
// Rolling out a behavior policy on the vector env into a D4RL-layout dataset.
// The policy is any batch action function, so datasets/ needs no LibTorch.
#include <cstdint>
#include <functional>
#include <string>

#include "modiff/datasets/d4rl_dataset.h"

namespace modiff::datasets {

// Fills actions [n, act] for observations [n, obs].
using BatchPolicy = std::function<void(const float* observations, int n, double* actions)>;

struct GenerateOptions {
  long transitions = 1000000;
  uint64_t seed = 0;     // env i of the vector env is seeded with seed + i
  int num_envs = 64;     // envs stepped together (the policy sees them as one batch)
};

// Steps `num_envs` envs in lockstep with `policy` and appends every finished
// episode (in the order episodes finish; ties by env index) until `transitions`
// rows; the last episode is cut there and its last row marked as a timeout (a
// truncation). The result depends on the seed and the policy only.
Dataset generate_dataset(const envs::EnvSpec& spec, const BatchPolicy& policy, const GenerateOptions& options);

}  // namespace modiff::datasets
