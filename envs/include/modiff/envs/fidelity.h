#pragma once
// Replaying a reference (PyBullet) episode on the native env and measuring how
// far the two drift apart, step by step.
#include <string>
#include <vector>

#include "modiff/envs/locomotion_env.h"

namespace modiff::envs {

// One recorded PyBullet episode (../shared/golden/README.md), as plain arrays.
struct ReferenceEpisode {
  std::string name;
  std::vector<std::string> joint_names;
  JointState initial;                        // actuated joints after reset
  std::vector<std::vector<double>> actions;  // [T][act]
  std::vector<std::vector<float>> observations;  // [T+1][obs]
  std::vector<double> rewards;               // [T]
  std::vector<uint8_t> dones;                // [T]
};

struct EpisodeFidelity {
  std::string name;
  int steps_reference = 0;  // steps until the reference terminated (or ended)
  int steps_replayed = 0;   // steps until the native env terminated (or the actions ran out)
  std::vector<double> obs_max_abs_error;     // per observation row, from row 0 (after reset)
  std::vector<double> reward_abs_error;      // per step
};

// The order the golden episodes were recorded in: one env per robot, action
// kind `zero` before `sine` (others after, by name), seeds ascending. Replaying
// in this order on one env reproduces each episode's reset history, which
// matters once: pybullet_envs counts the floor among the body parts only from
// an env's second reset on, changing the first episode's first progress reward.
std::vector<const ReferenceEpisode*> recording_order(const std::vector<ReferenceEpisode>& episodes);

// Replays `episode` on `env` from its initial joint state with its actions.
// Throws modiff::Error if the episode's joints or sizes do not match the env.
EpisodeFidelity replay_reference(LocomotionEnv& env, const ReferenceEpisode& episode);

}  // namespace modiff::envs
