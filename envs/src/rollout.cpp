#include "modiff/envs/rollout.h"

#include <algorithm>

#include "modiff/common/error.h"
#include "modiff/common/rng.h"
#include "modiff/envs/episode_pool.h"

namespace modiff::envs {

SimplePolicy parse_simple_policy(const std::string& name) {
  if (name == "random") return SimplePolicy::Random;
  if (name == "zero") return SimplePolicy::Zero;
  throw Error("unknown policy '" + name + "' (expected random or zero)");
}

std::vector<EpisodeOutcome> run_rollouts(const EnvSpec& spec, const RolloutOptions& options, uint64_t* env_steps) {
  if (options.episodes <= 0) throw Error("--episodes must be positive, got " + std::to_string(options.episodes));
  std::vector<EpisodeOutcome> outcomes(static_cast<size_t>(options.episodes));
  EpisodePoolOptions pool;
  pool.episodes = options.episodes;
  pool.max_envs = std::max(1, options.max_envs);
  pool.reset_seed = [&](long episode) { return derive_seed(options.seed, static_cast<uint64_t>(episode)); };
  EpisodeHooks hooks;
  hooks.policy = [&](const float*, int rows, const long* episodes, const int* steps, double* actions) {
    if (options.policy == SimplePolicy::Zero) return;  // the pool hands zeros
    for (int j = 0; j < rows; ++j) {
      // Episode e's action at step t: from (seed, e, t) alone.
      Rng rng(derive_seed(derive_seed(derive_seed(options.seed, /*purpose=*/1), static_cast<uint64_t>(episodes[j])),
                          static_cast<uint64_t>(steps[j])));
      for (int k = 0; k < spec.act_dim; ++k) actions[static_cast<size_t>(j) * spec.act_dim + k] = rng.uniform(-1, 1);
    }
  };
  hooks.after_step = [&](int, long episode, const EpisodeOutcome& so_far, bool ended) {
    if (ended) outcomes[static_cast<size_t>(episode)] = so_far;
    return true;
  };
  const long steps = run_episodes(spec, pool, hooks);
  if (env_steps) *env_steps = static_cast<uint64_t>(steps);
  return outcomes;
}

}  // namespace modiff::envs
