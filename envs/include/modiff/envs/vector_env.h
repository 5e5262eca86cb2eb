#pragma once
// N independent locomotion envs stepped in parallel on oneTBB threads, with
// auto-reset. Env i is seeded with seed + i at the first reset and continues
// its own random stream afterwards, so the results are identical to stepping
// the envs one at a time, whatever the thread count.
#include <cstdint>
#include <memory>
#include <vector>

#include "modiff/envs/locomotion_env.h"

namespace modiff::envs {

class VectorEnv {
 public:
  VectorEnv(const EnvSpec& spec, int num_envs, uint64_t seed);
  ~VectorEnv();
  VectorEnv(VectorEnv&&) noexcept;

  int num_envs() const { return static_cast<int>(envs_.size()); }
  const EnvSpec& spec() const { return spec_; }

  // Resets every env (env i with seed + i); fills observations().
  void reset();

  // Steps every env with actions laid out [num_envs, act_dim]. An env whose
  // episode ends is reset at once: its observations() row is the first
  // observation of the next episode, final_observations() holds the last one,
  // and episode_returns()/episode_lengths() the finished episode's totals.
  // With `active` (one flag per env), envs whose flag is 0 are not stepped and
  // keep their rows: callers that need a fixed number of episodes use it.
  void step(const double* actions, const uint8_t* active = nullptr);

  const std::vector<float>& observations() const { return obs_; }
  const std::vector<float>& final_observations() const { return final_obs_; }
  const std::vector<double>& rewards() const { return rewards_; }
  const std::vector<uint8_t>& terminated() const { return terminated_; }
  const std::vector<uint8_t>& truncated() const { return truncated_; }
  const std::vector<double>& episode_returns() const { return episode_return_done_; }
  const std::vector<int>& episode_lengths() const { return episode_length_done_; }

  LocomotionEnv& env(int i) { return *envs_[i]; }

 private:
  EnvSpec spec_;
  uint64_t seed_;
  std::vector<std::unique_ptr<LocomotionEnv>> envs_;
  struct Affinity;  // oneTBB's affinity partitioner: remembers which thread ran which env
  std::unique_ptr<Affinity> affinity_;
  std::vector<float> obs_, final_obs_;
  std::vector<double> rewards_, running_return_, episode_return_done_;
  std::vector<int> running_length_, episode_length_done_;
  std::vector<uint8_t> terminated_, truncated_;
};

}  // namespace modiff::envs
