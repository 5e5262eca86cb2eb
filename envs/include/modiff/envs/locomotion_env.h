#pragma once
// One PyBullet-style locomotion task (hopper, walker2d, halfcheetah, ant) on a
// native Bullet btMultiBody world. Mirrors pybullet_envs' WalkerBaseBulletEnv:
// same scene, motors, reset, observation, five reward terms, alive rule and a
// time limit reported as truncation. See docs/fidelity.md for every modelling
// decision.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "modiff/envs/env_spec.h"

namespace modiff::envs {

// Actuated joints in env (= action) order.
struct JointState {
  std::vector<double> positions;   // rad
  std::vector<double> velocities;  // rad/s
};

// PyBullet's five reward terms; the reward is their sum.
struct RewardTerms {
  double alive = 0;
  double progress = 0;
  double electricity = 0;
  double joints_at_limit = 0;
  double feet_collision = 0;
  double total() const { return alive + progress + electricity + joints_at_limit + feet_collision; }
};

struct StepResult {
  double reward = 0;
  RewardTerms terms;
  bool terminated = false;  // alive rule failed: a true terminal
  bool truncated = false;   // time limit reached: not a terminal
};

class LocomotionEnv {
 public:
  explicit LocomotionEnv(const EnvSpec& spec);
  ~LocomotionEnv();
  LocomotionEnv(LocomotionEnv&&) noexcept;
  LocomotionEnv& operator=(LocomotionEnv&&) noexcept;

  const EnvSpec& spec() const;
  const std::vector<std::string>& joint_names() const;

  // Starts an episode. A seed re-seeds the env's generator (gym's
  // reset(seed=...)); without one the generator's stream continues, so a
  // sequence of resets after one seeded reset is reproducible.
  void reset(std::optional<uint64_t> seed, float* observation);
  // Starts an episode from given actuated-joint positions and velocities (the
  // root at its model pose, at rest): for replays and fidelity tests.
  void reset_to(const JointState& state, float* observation);

  // Advances one env step (4 physics substeps). `action` holds act_dim finite
  // values; they are clipped to [-1, 1] for the torque, raw for the cost.
  StepResult step(const double* action, float* observation);

  // Checked conveniences: throw modiff::Error on a wrong length or non-finite value.
  std::vector<float> reset_checked(std::optional<uint64_t> seed);
  StepResult step_checked(const std::vector<double>& action, std::vector<float>& observation);

  int elapsed_steps() const;
  JointState joint_state() const;
  std::array<double, 3> torso_xyz() const;  // torso centre of mass, world frame
  std::array<double, 3> torso_rpy() const;  // roll, pitch, yaw

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace modiff::envs
