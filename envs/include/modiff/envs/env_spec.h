#pragma once
// The registry of locomotion tasks: names, aliases, dimensions and D4RL's
// bullet reference returns used for normalized scores.
#include <string>
#include <vector>

namespace modiff::envs {

enum class Robot { Hopper, Walker2d, HalfCheetah, Ant };

struct EnvSpec {
  std::string id;              // bullet-hopper-v0
  std::string pybullet_alias;  // HopperBulletEnv-v0
  Robot robot;
  std::string robot_file;      // assets/robots/<file>
  int obs_dim;
  int act_dim;
  int max_episode_steps = 1000;
  double ref_min_return;  // D4RL infos.py REF_MIN_SCORE (uniform random policy)
  double ref_max_return;  // D4RL infos.py REF_MAX_SCORE (expert)
};

const std::vector<EnvSpec>& all_envs();

// Finds an env by id or PyBullet alias; throws modiff::Error naming the
// unknown name and the known ones.
const EnvSpec& find_env(const std::string& name);

// 100 * (return - REF_MIN) / (REF_MAX - REF_MIN).
double normalized_score(const EnvSpec& spec, double episode_return);

}  // namespace modiff::envs
