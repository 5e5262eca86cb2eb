#include "modiff/envs/episode_pool.h"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <limits>
#include <memory>

#include "modiff/common/error.h"

namespace modiff::envs {
namespace {

// A slot runs one episode at a time; `episode` < 0 marks an idle slot.
struct Slot {
  long episode = -1;
  std::unique_ptr<LocomotionEnv> env;
  std::vector<float> obs;
  EpisodeOutcome so_far;
};

class Pool {
 public:
  Pool(const EnvSpec& spec, const EpisodePoolOptions& options, const EpisodeHooks& hooks)
      : spec_(spec), o_(options), hooks_(hooks) {
    const long slots = o_.max_envs > 0 ? std::min<long>(o_.max_envs, o_.episodes) : o_.episodes;
    slots_.resize(static_cast<size_t>(slots));
  }

  long run() {
    while (assign_episodes()) {
      act();
      step();
      if (hooks_.progress) hooks_.progress(env_steps_, finished_);
    }
    return env_steps_;
  }

 private:
  // Drops running episodes that are no longer needed and gives idle slots the next ones; false once none runs.
  bool assign_episodes() {
    const long cutoff = hooks_.first_unneeded ? std::min(hooks_.first_unneeded(), o_.episodes) : o_.episodes;
    live_.clear();
    for (size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.episode >= cutoff) {
        if (hooks_.on_drop) hooks_.on_drop(static_cast<int>(i), s.episode);
        s.episode = -1;
      }
      if (s.episode < 0 && next_episode_ < cutoff) start(static_cast<int>(i), next_episode_++);
      if (s.episode >= 0) live_.push_back(static_cast<int>(i));
    }
    return !live_.empty();
  }

  void start(int i, long episode) {
    Slot& s = slots_[static_cast<size_t>(i)];
    s.episode = episode;
    s.so_far = {};
    s.obs.resize(static_cast<size_t>(spec_.obs_dim));
    if (!s.env || !o_.reused_envs) {
      s.env = std::make_unique<LocomotionEnv>(spec_);
      if (o_.reused_envs) s.env->reset(0, s.obs.data());
    }
    s.env->reset(o_.reset_seed(episode), s.obs.data());
    if (hooks_.on_start) hooks_.on_start(i, episode);
  }

  void act() {
    const int m = static_cast<int>(live_.size()), obs_dim = spec_.obs_dim;
    batch_obs_.resize(static_cast<size_t>(m) * obs_dim);
    episodes_.resize(static_cast<size_t>(m));
    steps_.resize(static_cast<size_t>(m));
    actions_.assign(static_cast<size_t>(m) * spec_.act_dim, 0.0);
    for (int j = 0; j < m; ++j) {
      const Slot& s = slots_[static_cast<size_t>(live_[j])];
      std::copy(s.obs.begin(), s.obs.end(), batch_obs_.begin() + static_cast<size_t>(j) * obs_dim);
      episodes_[j] = s.episode;
      steps_[j] = s.so_far.length;
    }
    hooks_.policy(batch_obs_.data(), m, episodes_.data(), steps_.data(), actions_.data());
  }

  void step() {
    const int m = static_cast<int>(live_.size()), obs_dim = spec_.obs_dim;
    ended_.assign(static_cast<size_t>(m), 0);
    tbb::parallel_for(0, m, [&](int j) {
      Slot& s = slots_[static_cast<size_t>(live_[j])];
      const double* action = actions_.data() + static_cast<size_t>(j) * spec_.act_dim;
      const StepResult r = s.env->step(action, s.obs.data());
      if (hooks_.on_step)
        hooks_.on_step({live_[j], s.episode, s.so_far.length, batch_obs_.data() + static_cast<size_t>(j) * obs_dim,
                        action, s.obs.data(), r});
      s.so_far.episode_return += r.reward;
      s.so_far.length += 1;
      s.so_far.terminated = r.terminated;
      ended_[j] = r.terminated || r.truncated || s.so_far.length == o_.max_steps;
    });
    env_steps_ += m;
    for (int j = 0; j < m; ++j) {
      Slot& s = slots_[static_cast<size_t>(live_[j])];
      const bool go_on = hooks_.after_step ? hooks_.after_step(live_[j], s.episode, s.so_far, ended_[j]) : true;
      if (ended_[j] || !go_on) {
        ++finished_;
        s.episode = -1;
        if (!o_.reused_envs) s.env.reset();  // frees its Bullet world now
      }
    }
  }

  const EnvSpec& spec_;
  const EpisodePoolOptions& o_;
  const EpisodeHooks& hooks_;
  std::vector<Slot> slots_;
  long next_episode_ = 0, env_steps_ = 0, finished_ = 0;
  std::vector<int> live_;
  std::vector<float> batch_obs_;
  std::vector<long> episodes_;
  std::vector<int> steps_;
  std::vector<double> actions_;
  std::vector<uint8_t> ended_;
};

}  // namespace

long run_episodes(const EnvSpec& spec, const EpisodePoolOptions& options, const EpisodeHooks& hooks) {
  if (options.episodes <= 0) throw Error("--episodes must be positive, got " + std::to_string(options.episodes));
  if (options.max_envs < 0) throw Error("--max-envs must be >= 0");
  if (!options.reset_seed || !hooks.policy) throw Error("internal: an episode pool without reset seeds or policy");
  return Pool(spec, options, hooks).run();
}

}  // namespace modiff::envs
