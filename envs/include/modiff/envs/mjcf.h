#pragma once
// The subset of MJCF that pybullet_data's locomotion models use, as plain data.
// parse_mjcf() resolves <default> values and rejects any element or attribute
// it does not know with its line number. Values stay as written (angles in the
// compiler's unit): turning them into a multibody is the importer's job
// (pybullet_importer.h), which follows PyBullet's own conversion rules.
// Attributes that only MuJoCo's solver reads (and PyBullet's importer skips)
// are accepted and recorded in `ignored_attributes`, never silently dropped.
#include <array>
#include <optional>
#include <string>
#include <vector>

namespace modiff::envs {

using Vec3 = std::array<double, 3>;
using Quat = std::array<double, 4>;  // w, x, y, z (MJCF order)

enum class GeomType { Capsule, Sphere, Box, Cylinder };
enum class JointType { Hinge, Slide, Free };

struct MjcfGeom {
  std::string name;
  GeomType type = GeomType::Sphere;
  std::vector<double> size;            // as written: radius [, half-length | half-extents]
  std::optional<std::array<double, 6>> fromto;
  Vec3 pos{0, 0, 0};
  std::optional<Quat> quat;                      // w x y z, as written
  std::optional<std::array<double, 4>> axisangle;  // axis x y z, angle (compiler unit)
  double density = 1000.0;             // kg/m^3
  std::optional<double> mass;          // explicit mass overrides density
  Vec3 friction{1.0, 0.005, 0.0001};   // sliding, torsional, rolling
  int contype = 1;
  int conaffinity = 1;
  int condim = 3;
  int line = 0;
};

struct MjcfJoint {
  std::string name;
  JointType type = JointType::Hinge;
  Vec3 axis{0, 0, 1};
  Vec3 pos{0, 0, 0};
  bool limited = false;
  bool has_range = false;
  double range_lo = 0, range_hi = 0;   // as written: compiler angle unit (hinge) or metres (slide)
  double damping = 0;
  double armature = 0;
  double stiffness = 0;
  double ref = 0;
  int line = 0;
};

struct MjcfInertial {
  std::optional<double> mass;
  std::optional<Vec3> pos;
};

struct MjcfBody {
  std::string name;
  Vec3 pos{0, 0, 0};
  std::optional<Quat> quat;  // w x y z, as written
  std::vector<MjcfJoint> joints;
  std::vector<MjcfGeom> geoms;
  std::optional<MjcfInertial> inertial;
  std::vector<MjcfBody> children;
  int line = 0;
};

struct MjcfMotor {
  std::string name;
  std::string joint;
  double gear = 1;
  bool ctrllimited = false;
  double ctrl_lo = -1, ctrl_hi = 1;
  int line = 0;
};

struct MjcfModel {
  std::string name;
  std::string source;                  // file name, for messages
  bool angles_in_degrees = true;       // MJCF default
  bool global_coordinates = false;
  std::optional<double> total_mass;    // compiler settotalmass
  std::vector<MjcfBody> bodies;        // children of <worldbody>
  std::vector<MjcfMotor> motors;
  std::vector<std::string> ignored_attributes;  // "element@attribute (line N)", for docs and --verbose
};

// Parses MJCF text; `source` names the file in error messages.
MjcfModel parse_mjcf(const std::string& xml_text, const std::string& source);
MjcfModel load_mjcf_file(const std::string& path);

}  // namespace modiff::envs
