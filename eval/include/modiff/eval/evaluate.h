#pragma once
// Rolling out a policy for many (seed, episode) pairs at once: every episode
// gets its own env, physics is stepped on oneTBB threads, and at each step the
// observations of all live envs go through the policy in one batch (all envs x
// all candidates in one denoising pass). Episode (s, e) uses env seed
// derive_seed(s, e) and draws its policy noise from keys of its own, so its
// result depends on (s, e) alone: not on the thread count, the batch it shares,
// or the other seeds evaluated beside it.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "modiff/agents/inference_policy.h"
#include "modiff/envs/env_spec.h"
#include "modiff/envs/episode_pool.h"

namespace modiff::eval {

// One evaluated episode: its outcome (return, length, terminated or truncated), which (seed, episode) it was,
// and its D4RL-normalized score.
struct EpisodeRecord : envs::EpisodeOutcome {
  uint64_t seed = 0;
  int episode = 0;
  double normalized_score = 0;
};

// How the episodes of one or several evaluations share an episode pool.
struct EvalPool {
  int max_envs = 0;  // envs alive at once (0: all episodes at once)
  int max_steps = 0; // > 0: stop every episode after this many steps (benchmarks), recorded as truncated
  // Whether policies alike act in stacked passes (agents::SharedPasses; on CUDA by default).
  agents::PassStacking stacking = agents::PassStacking::Auto;
  // Called now and then with (env steps so far, episodes finished, episodes in all).
  std::function<void(long, int, int)> progress;
};

struct EvalOptions : EvalPool {
  std::vector<uint64_t> seeds{0};
  int episodes = 10;
};

// Episodes in (seed, episode) order.
std::vector<EpisodeRecord> evaluate(agents::InferencePolicy& policy, const envs::EnvSpec& env,
                                    const EvalOptions& options, long* env_steps = nullptr);

// Several evaluations on one env in one episode pool: the physics of all their episodes stepped together, each
// policy acting on its own episodes' rows in passes of its own. Each job's episodes are exactly those
// evaluate(*job.policy, env, {job.seeds, job.episodes}) gives: an episode depends on its policy, seed and
// episode number alone, not on what is evaluated beside it. The policies act at once (agents::SharedPasses: on
// CUDA the chunks of policies alike in stacked passes): each job its own policy.
struct EvalJob {
  agents::InferencePolicy* policy = nullptr;
  std::vector<uint64_t> seeds;
  int episodes = 0;
};
// `stacked_passes`: the stacked policy passes run (benchmarks).
std::vector<std::vector<EpisodeRecord>> evaluate_many(const std::vector<EvalJob>& jobs, const envs::EnvSpec& env,
                                                      const EvalPool& pool, long* env_steps = nullptr,
                                                      long* stacked_passes = nullptr);

// Per-seed means of the normalized scores, in the order of `seeds`.
std::vector<double> per_seed_means(const std::vector<EpisodeRecord>& episodes, const std::vector<uint64_t>& seeds);

// The env a policy was trained for (its manifest's env id; an override must agree).
const envs::EnvSpec& env_for_policy(const agents::InferencePolicy& policy, const std::string& env_override);

}  // namespace modiff::eval
