#pragma once
// What modiff builds from a robot file: the multibody's links with their
// joints, masses and inertias, as PyBullet's importer would make them. For
// `modiff robot FILE` and for checking a user's MJCF file before using it.
#include <string>
#include <vector>

namespace modiff::envs {

struct LinkDescription {
  std::string name;
  std::string joint;       // joint name
  std::string joint_type;  // fixed, revolute, continuous, prismatic
  double lower = 0, upper = 0;
  double mass_kg = 0;
  double inertia[3] = {0, 0, 0};  // principal moments, kg m^2
  int parent = -1;                // -1: the base
};

struct RobotDescription {
  std::string source;
  std::string base;
  bool fixed_base = false;
  double base_mass_kg = 0;
  std::vector<LinkDescription> links;
  std::vector<std::string> ignored_attributes;  // MuJoCo-only attributes PyBullet skips
};

// Parses and imports a robot file; throws modiff::Error naming the file, line,
// element or attribute at fault.
RobotDescription describe_robot_file(const std::string& path);

}  // namespace modiff::envs
