#include "modiff/eval/evaluate.h"


#include "modiff/common/error.h"
#include "modiff/common/rng.h"
#include "modiff/envs/episode_pool.h"

namespace modiff::eval {

const envs::EnvSpec& env_for_policy(const agents::InferencePolicy& policy, const std::string& env_override) {
  const auto& trained = policy.diffusion().env_id;
  if (trained.empty() && env_override.empty())
    throw Error(policy.diffusion().dir + " was trained on data of no registered env: give --env");
  if (env_override.empty()) return envs::find_env(trained);
  const auto& env = envs::find_env(env_override);
  if (!trained.empty() && env.id != trained)
    throw Error("--env " + env.id + ": the policy " + policy.diffusion().dir + " was trained for " + trained);
  if (env.obs_dim != policy.diffusion().obs_dim || env.act_dim != policy.diffusion().act_dim)
    throw Error("--env " + env.id + " has other observation or action widths than " + policy.diffusion().dir);
  return env;
}

std::vector<EpisodeRecord> evaluate(agents::InferencePolicy& policy, const envs::EnvSpec& spec,
                                    const EvalOptions& options, long* env_steps) {
  if (options.episodes <= 0) throw Error("--episodes must be positive");
  if (options.seeds.empty()) throw Error("--seeds: give at least one seed");
  if (options.max_envs < 0) throw Error("--max-envs must be >= 0");
  // Pool episode k is episode k % episodes of seed k / episodes.
  const auto seed_of = [&](long k) { return options.seeds[static_cast<size_t>(k / options.episodes)]; };
  const auto episode_of = [&](long k) { return static_cast<int>(k % options.episodes); };
  const long total = static_cast<long>(options.seeds.size()) * options.episodes;
  std::vector<EpisodeRecord> records(static_cast<size_t>(total));
  envs::EpisodePoolOptions pool;
  pool.episodes = total;
  pool.max_envs = options.max_envs;
  pool.max_steps = options.max_steps;
  pool.reset_seed = [&](long k) { return derive_seed(seed_of(k), static_cast<uint64_t>(episode_of(k))); };
  std::vector<uint64_t> keys;
  envs::EpisodeHooks hooks;
  hooks.policy = [&](const float* obs, int rows, const long* episodes, const int* steps, double* actions) {
    keys.resize(static_cast<size_t>(rows));
    // The policy's noise for this episode's step t: from (seed, episode, t) alone.
    for (int j = 0; j < rows; ++j)
      keys[j] = derive_seed(derive_seed(derive_seed(seed_of(episodes[j]), 0x5EED), static_cast<uint64_t>(episode_of(episodes[j]))),
                            static_cast<uint64_t>(steps[j]));
    policy.act(obs, rows, actions, keys.data());
  };
  hooks.after_step = [&](int, long k, const envs::EpisodeOutcome& so_far, bool ended) {
    if (ended)
      records[static_cast<size_t>(k)] = {so_far, seed_of(k), episode_of(k), envs::normalized_score(spec, so_far.episode_return)};
    return true;
  };
  if (options.progress)
    hooks.progress = [&](long steps, long finished) { options.progress(steps, static_cast<int>(finished), static_cast<int>(total)); };
  const long steps = envs::run_episodes(spec, pool, hooks);
  if (env_steps) *env_steps = steps;
  return records;
}

std::vector<double> per_seed_means(const std::vector<EpisodeRecord>& episodes, const std::vector<uint64_t>& seeds) {
  std::vector<double> means;
  for (uint64_t s : seeds) {
    double sum = 0;
    int n = 0;
    for (const auto& e : episodes)
      if (e.seed == s) {
        sum += e.normalized_score;
        ++n;
      }
    if (n == 0) throw Error("no episodes of seed " + std::to_string(s));
    means.push_back(sum / n);
  }
  return means;
}

}  // namespace modiff::eval
