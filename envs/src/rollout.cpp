#include "modiff/envs/rollout.h"

#include <algorithm>

#include "modiff/common/error.h"
#include "modiff/common/rng.h"
#include "modiff/envs/vector_env.h"

namespace modiff::envs {

SimplePolicy parse_simple_policy(const std::string& name) {
  if (name == "random") return SimplePolicy::Random;
  if (name == "zero") return SimplePolicy::Zero;
  throw Error("unknown policy '" + name + "' (expected random or zero)");
}

std::vector<EpisodeOutcome> run_rollouts(const EnvSpec& spec, const RolloutOptions& options, uint64_t* env_steps) {
  if (options.episodes <= 0) throw Error("--episodes must be positive, got " + std::to_string(options.episodes));
  const int num_envs = std::min(options.episodes, std::max(1, options.max_envs));
  VectorEnv venv(spec, num_envs, options.seed);
  venv.reset();

  // Env i runs episodes i, i + num_envs, ...; `next_episode[i]` is the one it is on.
  std::vector<int> current_episode(num_envs);
  for (int i = 0; i < num_envs; ++i) current_episode[i] = i;
  std::vector<uint8_t> active(num_envs, 1);
  std::vector<Rng> action_rng;
  for (int i = 0; i < num_envs; ++i) action_rng.emplace_back(derive_seed(options.seed + i, /*purpose=*/1));

  std::vector<EpisodeOutcome> outcomes(options.episodes);
  std::vector<double> actions(static_cast<size_t>(num_envs) * spec.act_dim, 0.0);
  int remaining = options.episodes;
  uint64_t steps = 0;
  while (remaining > 0) {
    if (options.policy == SimplePolicy::Random)
      for (int i = 0; i < num_envs; ++i)
        if (active[i])
          for (int k = 0; k < spec.act_dim; ++k) actions[static_cast<size_t>(i) * spec.act_dim + k] = action_rng[i].uniform(-1, 1);
    venv.step(actions.data(), active.data());
    for (int i = 0; i < num_envs; ++i) {
      if (!active[i]) continue;
      ++steps;
      if (!venv.terminated()[i] && !venv.truncated()[i]) continue;
      EpisodeOutcome& o = outcomes[current_episode[i]];
      o.episode_return = venv.episode_returns()[i];
      o.length = venv.episode_lengths()[i];
      o.terminated = venv.terminated()[i];
      --remaining;
      current_episode[i] += num_envs;
      if (current_episode[i] >= options.episodes) active[i] = 0;
    }
  }
  if (env_steps) *env_steps = steps;
  return outcomes;
}

}  // namespace modiff::envs
