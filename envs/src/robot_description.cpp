#include "modiff/envs/robot_description.h"

#include "modiff/envs/mjcf.h"
#include "physics_world.h"

namespace modiff::envs {

RobotDescription describe_robot_file(const std::string& path) {
  const MjcfModel model = load_mjcf_file(path);
  PhysicsWorld world(model, SceneSettings{});
  const RobotParts& parts = world.robot_parts();
  const btMultiBody& mb = world.robot();
  RobotDescription d;
  d.source = path;
  d.base = parts.base_name;
  d.fixed_base = parts.fixed_base;
  d.base_mass_kg = mb.getBaseMass();
  d.ignored_attributes = model.ignored_attributes;
  for (int i = 0; i < mb.getNumLinks(); ++i) {
    const LinkInfo& info = parts.links[i];
    LinkDescription l;
    l.name = info.name;
    l.joint = info.joint_name;
    switch (info.joint_type) {
      case LinkJointType::Fixed: l.joint_type = "fixed"; break;
      case LinkJointType::Revolute: l.joint_type = "revolute"; break;
      case LinkJointType::Continuous: l.joint_type = "continuous"; break;
      case LinkJointType::Prismatic: l.joint_type = "prismatic"; break;
    }
    l.lower = info.lower_limit;
    l.upper = info.upper_limit;
    l.mass_kg = mb.getLinkMass(i);
    const btVector3 inertia = mb.getLinkInertia(i);
    for (int k = 0; k < 3; ++k) l.inertia[k] = inertia[k];
    l.parent = mb.getParent(i);
    d.links.push_back(l);
  }
  return d;
}

}  // namespace modiff::envs
