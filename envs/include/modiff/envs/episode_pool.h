#pragma once
// A fixed set of episodes on a bounded number of envs, stepped together: the one episode loop behind `modiff
// rollout`, the evaluator, SAC's evaluations and dataset generation. Each slot runs one episode at a time and,
// when it ends, takes the next one not yet started; episode k's env is reset with reset_seed(k). At every step
// the observations of all running episodes go to the policy in one batch (rows in slot order, each naming its
// episode and step, from which a policy draws its noise), then every env steps on oneTBB threads. An episode's
// course therefore depends on its reset seed and the policy's answers for it alone, not on the number of envs,
// the threads, or which slot runs it.
#include <cstdint>
#include <functional>
#include <vector>

#include "modiff/envs/env_spec.h"
#include "modiff/envs/locomotion_env.h"

namespace modiff::envs {

struct EpisodeOutcome {
  double episode_return = 0;
  int length = 0;
  bool terminated = false;  // false: truncated (the time limit, max_steps, or the caller stopped it)
};

// The running episodes' batch: `rows` observations [rows, obs_dim]; row j is step steps[j] of episode
// episodes[j]. The policy writes actions [rows, act_dim].
using BatchPolicy = std::function<void(const float* obs, int rows, const long* episodes, const int* steps,
                                       double* actions)>;

// One transition of one episode (on_step): the observation it acted on, the action, what the step gave.
struct EpisodeStep {
  int slot = 0;
  long episode = 0;
  int step = 0;  // 0-based, of this transition
  const float* obs = nullptr;
  const double* action = nullptr;
  const float* next_obs = nullptr;
  StepResult result;
};

struct EpisodePoolOptions {
  long episodes = 0;
  int max_envs = 0;   // slots (envs alive at once); 0: every episode at once
  int max_steps = 0;  // > 0: an episode ends after this many steps, as truncated (benchmarks)
  std::function<uint64_t(long episode)> reset_seed;
  // false: a fresh env per episode. true: one env per slot, reset once without a seed when made, so that every
  // episode runs on an env past its first reset as on one long-lived PyBullet env (data generation, which
  // follows D4RL's collection; docs/fidelity.md).
  bool reused_envs = false;
};

struct EpisodeHooks {
  BatchPolicy policy;                                   // required
  std::function<void(const EpisodeStep&)> on_step;      // every transition, on the stepping threads
  // After every step of a running episode, in slot order: the outcome so far and whether the env ended it.
  // Returning false stops it there (data generation cuts its last episode at the dataset's size). Default: runs
  // until the env ends it.
  std::function<bool(int slot, long episode, const EpisodeOutcome& so_far, bool ended)> after_step;
  // Before each step: the first episode no longer needed (default: every episode is). Running episodes from it on
  // are dropped (on_drop) and none from it on starts.
  std::function<long()> first_unneeded;
  std::function<void(int slot, long episode)> on_start, on_drop;
  // Now and then: env steps so far and episodes finished.
  std::function<void(long env_steps, long finished)> progress;
};

// Runs the episodes; returns the env steps taken.
long run_episodes(const EnvSpec& spec, const EpisodePoolOptions& options, const EpisodeHooks& hooks);

}  // namespace modiff::envs
