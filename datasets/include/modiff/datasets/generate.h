#pragma once
// Rolling out a behavior policy into a D4RL-layout dataset.
// The policy is any batch action function, so datasets/ needs no LibTorch.
#include <cstdint>
#include <functional>
#include <string>

#include "modiff/datasets/d4rl_dataset.h"

namespace modiff::datasets {

// Fills actions [n, act] for observations [n, obs]. Row r's randomness must come from keys[r] alone (a key
// names one episode's step), never from the rows beside it: that is what makes a dataset independent of how
// many envs run together.
using BatchPolicy = std::function<void(const float* observations, int n, const uint64_t* keys, double* actions)>;

struct GenerateOptions {
  long transitions = 1000000;
  uint64_t seed = 0;  // fixes every episode: episode k's reset and the policy's noise at its step t
  int num_envs = 64;  // episodes run side by side (speed only: the dataset does not depend on it)
};

// The env seed of episode k, and the key of the policy's randomness at its step t.
uint64_t episode_reset_seed(uint64_t seed, long episode);
uint64_t episode_step_key(uint64_t seed, long episode, long step);

// The dataset is defined as episodes 0, 1, 2, ... (episode k reset with episode_reset_seed(seed, k), its
// actions drawn with episode_step_key(seed, k, t)) laid end to end in index order and cut at `transitions`
// rows, the cut episode's last row marked as a timeout (a truncation), exactly as if they ran one after
// another. `num_envs` episodes run side by side on oneTBB threads; finished ones wait until every earlier one
// is in. The result depends on the seed and the policy only.
Dataset generate_dataset(const envs::EnvSpec& spec, const BatchPolicy& policy, const GenerateOptions& options);

}  // namespace modiff::datasets
