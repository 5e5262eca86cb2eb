#pragma once
// Fixed-count rollouts of a simple policy on a vector env: what `modiff
// rollout` and the env benchmark run. Episode k runs on env k % num_envs (env
// i seeded with seed + i), so results depend on the seed alone, never on the
// thread count.
#include <cstdint>
#include <string>
#include <vector>

#include "modiff/envs/env_spec.h"

namespace modiff::envs {

enum class SimplePolicy { Random, Zero };

SimplePolicy parse_simple_policy(const std::string& name);

struct EpisodeOutcome {
  double episode_return = 0;
  int length = 0;
  bool terminated = false;
};

struct RolloutOptions {
  SimplePolicy policy = SimplePolicy::Random;
  int episodes = 10;
  uint64_t seed = 0;
  int max_envs = 64;  // envs stepped together
};

// Returns one outcome per episode, in episode order; `env_steps` (optional)
// receives the number of env steps taken.
std::vector<EpisodeOutcome> run_rollouts(const EnvSpec& spec, const RolloutOptions& options,
                                         uint64_t* env_steps = nullptr);

}  // namespace modiff::envs
