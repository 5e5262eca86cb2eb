#include "modiff/eval/evaluate.h"

#include <tbb/parallel_for.h>

#include <memory>

#include "modiff/common/error.h"
#include "modiff/common/rng.h"
#include "modiff/envs/locomotion_env.h"

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
  struct Job {
    uint64_t seed;
    int episode;
  };
  std::vector<Job> jobs;
  for (uint64_t s : options.seeds)
    for (int e = 0; e < options.episodes; ++e) jobs.push_back({s, e});
  const int total = static_cast<int>(jobs.size());
  const int wave = options.max_envs > 0 ? std::min(options.max_envs, total) : total;
  const int obs_dim = spec.obs_dim, act_dim = spec.act_dim;
  std::vector<EpisodeRecord> records(total);
  long steps_taken = 0;
  int finished = 0;

  for (int start = 0; start < total; start += wave) {
    const int n = std::min(wave, total - start);
    std::vector<std::unique_ptr<envs::LocomotionEnv>> envs(n);
    std::vector<float> obs(static_cast<size_t>(n) * obs_dim);
    tbb::parallel_for(0, n, [&](int i) {
      const Job& job = jobs[start + i];
      envs[i] = std::make_unique<envs::LocomotionEnv>(spec);
      envs[i]->reset(derive_seed(job.seed, static_cast<uint64_t>(job.episode)), obs.data() + i * obs_dim);
    });
    std::vector<int> live(n);
    for (int i = 0; i < n; ++i) live[i] = i;
    std::vector<double> returns(n, 0.0);
    std::vector<int> lengths(n, 0);
    std::vector<float> batch_obs;
    std::vector<double> actions;
    std::vector<uint64_t> keys;
    while (!live.empty()) {
      const int m = static_cast<int>(live.size());
      batch_obs.resize(static_cast<size_t>(m) * obs_dim);
      keys.resize(m);
      for (int j = 0; j < m; ++j) {
        const int i = live[j];
        std::copy_n(obs.data() + i * obs_dim, obs_dim, batch_obs.data() + j * obs_dim);
        const Job& job = jobs[start + i];
        // The policy's noise for this episode's step t: from (seed, episode, t) alone.
        keys[j] = derive_seed(derive_seed(derive_seed(job.seed, 0x5EED), static_cast<uint64_t>(job.episode)),
                              static_cast<uint64_t>(lengths[i]));
      }
      actions.resize(static_cast<size_t>(m) * act_dim);
      policy.act(batch_obs.data(), m, actions.data(), keys.data());
      std::vector<uint8_t> done(m, 0);
      tbb::parallel_for(0, m, [&](int j) {
        const int i = live[j];
        const auto r = envs[i]->step(actions.data() + j * act_dim, obs.data() + i * obs_dim);
        returns[i] += r.reward;
        lengths[i] += 1;
        if (r.terminated || r.truncated || lengths[i] == options.max_steps) {
          done[j] = 1;
          const Job& job = jobs[start + i];
          records[start + i] = {job.seed, job.episode, returns[i], lengths[i],
                                envs::normalized_score(spec, returns[i]), r.terminated};
        }
      });
      steps_taken += m;
      std::vector<int> still;
      for (int j = 0; j < m; ++j) {
        if (done[j]) {
          ++finished;
          envs[live[j]].reset();  // frees its Bullet world now
        } else {
          still.push_back(live[j]);
        }
      }
      live.swap(still);
      if (options.progress) options.progress(steps_taken, finished, total);
    }
  }
  if (env_steps) *env_steps = steps_taken;
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
