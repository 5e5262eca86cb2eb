#pragma once
// Reads PyBullet reference episodes (../shared/golden/README.md) from HDF5.
#include <string>
#include <vector>

#include "modiff/envs/fidelity.h"

namespace modiff::datasets {

struct ReferenceFile {
  std::string robot;   // file attribute `robot`: hopper, walker2d, halfcheetah, ant
  std::string source;  // file attribute `source`
  std::vector<envs::ReferenceEpisode> episodes;
};

ReferenceFile load_reference_file(const std::string& path);

// The env a golden file's `robot` attribute names; throws for an unknown robot.
const envs::EnvSpec& env_for_robot(const std::string& robot, const std::string& path);

}  // namespace modiff::datasets
