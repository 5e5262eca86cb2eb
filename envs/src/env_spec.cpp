#include "modiff/envs/env_spec.h"

#include "modiff/common/error.h"

namespace modiff::envs {

const std::vector<EnvSpec>& all_envs() {
  // Dimensions follow pybullet_envs; reference returns are D4RL's bullet entries.
  static const std::vector<EnvSpec> specs = {
      {"bullet-hopper-v0", "HopperBulletEnv-v0", Robot::Hopper, "hopper.xml", 15, 3, 1000, 20.058972,
       1441.8059623430963},
      {"bullet-walker2d-v0", "Walker2DBulletEnv-v0", Robot::Walker2d, "walker2d.xml", 22, 6, 1000, 16.523877,
       1623.6476303317536},
      {"bullet-halfcheetah-v0", "HalfCheetahBulletEnv-v0", Robot::HalfCheetah, "half_cheetah.xml", 26, 6, 1000,
       -1275.766996, 2381.6725},
      {"bullet-ant-v0", "AntBulletEnv-v0", Robot::Ant, "ant.xml", 28, 8, 1000, 373.705955, 2650.495},
  };
  return specs;
}

const EnvSpec& find_env(const std::string& name) {
  std::string known;
  for (const auto& s : all_envs()) {
    if (s.id == name || s.pybullet_alias == name) return s;
    known += (known.empty() ? "" : ", ") + s.id;
  }
  throw Error("unknown env '" + name + "' (known: " + known + ", or their PyBullet names)");
}

double normalized_score(const EnvSpec& spec, double episode_return) {
  return 100.0 * (episode_return - spec.ref_min_return) / (spec.ref_max_return - spec.ref_min_return);
}

}  // namespace modiff::envs
