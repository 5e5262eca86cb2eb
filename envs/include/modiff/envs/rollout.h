#pragma once
// Fixed-count rollouts of a simple policy on the episode pool (episode_pool.h): what `modiff rollout` runs.
// Episode e's env is reset with derive_seed(seed, e) and its random actions are drawn from keys of (seed, e,
// step), so an episode depends on (seed, e) alone: not on the thread count or the number of envs.
#include <cstdint>
#include <string>
#include <vector>

#include "modiff/envs/env_spec.h"
#include "modiff/envs/episode_pool.h"

namespace modiff::envs {

enum class SimplePolicy { Random, Zero };

SimplePolicy parse_simple_policy(const std::string& name);

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
