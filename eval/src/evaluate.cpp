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

namespace {

void check_job(const EvalJob& job) {
  if (!job.policy) throw Error("internal: an evaluation without a policy");
  if (job.episodes <= 0) throw Error("--episodes must be positive");
  if (job.seeds.empty()) throw Error("--seeds: give at least one seed");
}

// The pool's episodes, job after job: pool episode k is episode `episode` of seed `seed` in job `job`.
struct PoolEpisode {
  size_t job;
  uint64_t seed;
  int episode;
};

std::vector<PoolEpisode> pool_episodes(const std::vector<EvalJob>& jobs) {
  std::vector<PoolEpisode> all;
  for (size_t j = 0; j < jobs.size(); ++j)
    for (uint64_t seed : jobs[j].seeds)
      for (int e = 0; e < jobs[j].episodes; ++e) all.push_back({j, seed, e});
  return all;
}

// The policy's noise for an episode's step t: from (seed, episode, t) alone.
uint64_t noise_key(const PoolEpisode& p, int step) {
  return derive_seed(derive_seed(derive_seed(p.seed, 0x5EED), static_cast<uint64_t>(p.episode)),
                     static_cast<uint64_t>(step));
}

}  // namespace

std::vector<std::vector<EpisodeRecord>> evaluate_many(const std::vector<EvalJob>& jobs, const envs::EnvSpec& spec,
                                                      const EvalPool& limits, long* env_steps,
                                                      long* stacked_passes) {
  if (jobs.empty()) return {};
  for (size_t j = 0; j < jobs.size(); ++j) {
    check_job(jobs[j]);
    for (size_t k = 0; k < j; ++k)  // they act at once, from different threads
      if (jobs[k].policy == jobs[j].policy) throw Error("internal: one policy in two evaluations of one pool");
  }
  if (limits.max_envs < 0) throw Error("--max-envs must be >= 0");
  const std::vector<PoolEpisode> all = pool_episodes(jobs);
  std::vector<size_t> first_of_job(jobs.size() + 1, 0);  // pool index of each job's first episode
  for (const auto& p : all) ++first_of_job[p.job + 1];
  for (size_t j = 0; j < jobs.size(); ++j) first_of_job[j + 1] += first_of_job[j];
  std::vector<std::vector<EpisodeRecord>> records(jobs.size());
  for (size_t j = 0; j < jobs.size(); ++j) records[j].resize(first_of_job[j + 1] - first_of_job[j]);

  envs::EpisodePoolOptions pool;
  pool.episodes = static_cast<long>(all.size());
  pool.max_envs = limits.max_envs;
  pool.max_steps = limits.max_steps;
  pool.reset_seed = [&](long k) { return derive_seed(all[k].seed, static_cast<uint64_t>(all[k].episode)); };
  // Each policy acts on its own rows (in the batch's order); the policies at once (SharedPasses: stacked passes for
  // those alike, the others each in passes of its own from a thread of its own).
  struct JobRows {
    std::vector<int> rows;  // of the batch
    std::vector<float> obs;
    std::vector<double> actions;
    std::vector<uint64_t> keys;
  };
  std::vector<JobRows> parts(jobs.size());
  agents::SharedPasses passes(limits.stacking);
  std::vector<agents::SharedPasses::Request> requests;
  envs::EpisodeHooks hooks;
  hooks.policy = [&](const float* obs, int rows, const long* episodes, const int* steps, double* actions) {
    const int obs_dim = spec.obs_dim, act_dim = spec.act_dim;
    for (auto& part : parts) part.rows.clear();
    for (int r = 0; r < rows; ++r) parts[all[episodes[r]].job].rows.push_back(r);
    requests.clear();
    for (size_t j = 0; j < jobs.size(); ++j) {
      JobRows& part = parts[j];
      const int n = static_cast<int>(part.rows.size());
      if (n == 0) continue;
      part.obs.resize(static_cast<size_t>(n) * obs_dim);
      part.actions.resize(static_cast<size_t>(n) * act_dim);
      part.keys.resize(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        const int r = part.rows[i];
        std::copy_n(obs + static_cast<size_t>(r) * obs_dim, obs_dim, part.obs.begin() + static_cast<size_t>(i) * obs_dim);
        part.keys[i] = noise_key(all[episodes[r]], steps[r]);
      }
      requests.push_back({jobs[j].policy, part.obs.data(), n, part.actions.data(), part.keys.data()});
    }
    passes.act(requests);
    for (const JobRows& part : parts)
      for (size_t i = 0; i < part.rows.size(); ++i)
        std::copy_n(part.actions.begin() + static_cast<long>(i) * act_dim, act_dim,
                    actions + static_cast<size_t>(part.rows[i]) * act_dim);
  };
  hooks.after_step = [&](int, long k, const envs::EpisodeOutcome& so_far, bool ended) {
    if (ended) {
      const PoolEpisode& p = all[k];
      records[p.job][k - first_of_job[p.job]] = {so_far, p.seed, p.episode,
                                                envs::normalized_score(spec, so_far.episode_return)};
    }
    return true;
  };
  if (limits.progress)
    hooks.progress = [&](long steps, long finished) {
      limits.progress(steps, static_cast<int>(finished), static_cast<int>(all.size()));
    };
  const long steps = envs::run_episodes(spec, pool, hooks);
  if (env_steps) *env_steps = steps;
  if (stacked_passes) *stacked_passes = passes.passes();
  return records;
}

std::vector<EpisodeRecord> evaluate(agents::InferencePolicy& policy, const envs::EnvSpec& spec,
                                    const EvalOptions& options, long* env_steps) {
  return std::move(evaluate_many({{&policy, options.seeds, options.episodes}}, spec, options, env_steps).front());
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
