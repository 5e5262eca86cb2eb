// pybullet_envs' WalkerBase robots and WalkerBaseBulletEnv, natively. The
// order of operations (apply torque, step, observe, alive, progress, contacts,
// costs) and the float32 roundings of the observation follow the Python code
// the bullet-D4RL data came from; docs/fidelity.md lists every decision.
#include "modiff/envs/locomotion_env.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "modiff/common/error.h"
#include "modiff/common/rng.h"
#include "physics_world.h"

namespace modiff::envs {

const std::map<std::string, std::string>& embedded_robot_files();  // robots_embedded.cpp

namespace {

constexpr double kTargetX = 1000.0;  // walk target, 1 km ahead
constexpr double kTargetY = 0.0;
constexpr double kElectricityCost = -2.0;
constexpr double kStallTorqueCost = -0.1;
constexpr double kJointsAtLimitCost = -0.1;

enum class AliveRule { UprightAbove08, CheetahNoBodyContact, AntAbove026 };

struct RobotRules {
  double power;
  std::map<std::string, double> power_coef;  // overrides of the default 100
  std::vector<std::string> feet;
  AliveRule alive;
  bool can_terminate;
};

RobotRules rules_for(Robot robot) {
  switch (robot) {
    case Robot::Hopper:
      return {0.75, {}, {"foot"}, AliveRule::UprightAbove08, true};
    case Robot::Walker2d:
      return {0.40, {{"foot_joint", 30.0}, {"foot_left_joint", 30.0}}, {"foot", "foot_left"}, AliveRule::UprightAbove08,
              true};
    case Robot::HalfCheetah:
      return {0.90,
              {{"bthigh", 120.0}, {"bshin", 90.0}, {"bfoot", 60.0}, {"fthigh", 140.0}, {"fshin", 60.0}, {"ffoot", 30.0}},
              {"ffoot", "fshin", "fthigh", "bfoot", "bshin", "bthigh"},
              AliveRule::CheetahNoBodyContact,
              false};
    case Robot::Ant:
      return {2.5,
              {},
              {"front_left_foot", "front_right_foot", "left_back_foot", "right_back_foot"},
              AliveRule::AntAbove026,
              true};
  }
  throw Error("unknown robot");
}

// numpy's add.reduce over float64: sequential below 8 values, 8 interleaved
// partial sums up to 128 (modiff's arrays are never longer). Matching it keeps
// the "body xyz" mean bit-identical to PyBullet's Python.
double numpy_sum(const double* v, size_t n) {
  if (n < 8) {
    double s = 0;  // the reduction starts from the identity
    for (size_t i = 0; i < n; ++i) s += v[i];
    return s;
  }
  double r[8];
  for (int k = 0; k < 8; ++k) r[k] = v[k];
  size_t i = 8;
  for (; i < n - (n % 8); i += 8)
    for (int k = 0; k < 8; ++k) r[k] += v[i + k];
  double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
  for (; i < n; ++i) s += v[i];
  return 0.0 + s;
}

// pybullet.getEulerFromQuaternion, including its clamp constant.
std::array<double, 3> euler_from_quaternion(const btQuaternion& q) {
  const double x = q.x(), y = q.y(), z = q.z(), w = q.w();
  const double squ = w * w, sqx = x * x, sqy = y * y, sqz = z * z;
  const double roll = std::atan2(2 * (y * z + w * x), squ - sqx - sqy + sqz);
  const double sarg = -2 * (x * z - w * y);
  const double pitch = sarg <= -1.0 ? -0.5 * 3.141592538 : (sarg >= 1.0 ? 0.5 * 3.141592538 : std::asin(sarg));
  const double yaw = std::atan2(2 * (x * y + w * z), squ + sqx - sqy - sqz);
  return {roll, pitch, yaw};
}

}  // namespace

// Parsed once per robot file and shared (read-only) by every env.
const MjcfModel& robot_model(const std::string& robot_file) {
  static const std::map<std::string, MjcfModel> models = [] {
    std::map<std::string, MjcfModel> m;
    for (const auto& [name, text] : embedded_robot_files()) m.emplace(name, parse_mjcf(text, "assets/robots/" + name));
    return m;
  }();
  auto it = models.find(robot_file);
  if (it == models.end()) throw Error("robot file '" + robot_file + "' is not built into modiff");
  return it->second;
}

struct LocomotionEnv::Impl {
  EnvSpec spec;
  RobotRules rules;
  std::unique_ptr<PhysicsWorld> physics;
  std::vector<int> joint_links;  // actuated joints (multibody link index), action order
  std::vector<std::string> joint_names;
  std::vector<double> power_coef;
  std::vector<int> foot_links;
  // pybullet_envs' `parts` dict in its order: a link's centre of mass (offset 0)
  // or the frame of a joint link folded into it; -1 is the base.
  struct Part {
    int link;
    btVector3 offset_in_com;
  };
  std::vector<Part> parts;
  int torso_link = -1;

  Rng rng;
  bool floor_in_parts = false;  // pybullet_envs adds the floor to `parts` after the first reset's observation
  std::vector<float> joint_obs;  // [rel pos, 0.1 * vel] per joint, float32 as in Python
  std::vector<float> feet_contact;
  double initial_z = 0;
  double potential = 0;
  int steps = 0;
  std::array<double, 3> body_rpy{0, 0, 0};
  int joints_at_limit = 0;

  explicit Impl(const EnvSpec& s) : spec(s), rules(rules_for(s.robot)) {
    physics = std::make_unique<PhysicsWorld>(robot_model(spec.robot_file), SceneSettings{});
    index_robot();
  }

  // The bookkeeping of pybullet_envs' addToScene: ordered joints, parts, torso, feet.
  void index_robot() {
    const RobotParts& rp = physics->robot_parts();
    const int n = static_cast<int>(rp.links.size());
    bool torso_found = false;
    std::map<std::string, size_t> part_position;
    auto put_part = [&](const std::string& key, int link, btVector3 offset) {
      auto found = part_position.find(key);
      if (found != part_position.end()) {
        parts[found->second] = {link, offset};  // a dict keeps a re-assigned key where it was
      } else {
        part_position[key] = parts.size();
        parts.push_back({link, offset});
      }
    };
    for (int j = 0; j < n; ++j) {
      const LinkInfo& l = rp.links[j];
      if (!l.joint_link_name.empty()) put_part(l.joint_link_name, j, l.joint_frame_in_com);
      put_part(l.name, j, btVector3(0, 0, 0));
      if (l.name == "torso") {
        torso_link = j;
        torso_found = true;
      }
      if (j == 0 && !torso_found) {
        put_part("torso", -1, btVector3(0, 0, 0));
        torso_link = -1;
      }
      const bool actuated = l.joint_type != LinkJointType::Fixed && l.joint_name.rfind("ignore", 0) != 0;
      if (!actuated) continue;
      joint_links.push_back(j);
      joint_names.push_back(l.joint_name);
      auto coef = rules.power_coef.find(l.joint_name);
      power_coef.push_back(coef == rules.power_coef.end() ? 100.0 : coef->second);
    }
    if (static_cast<int>(joint_links.size()) != spec.act_dim)
      throw Error(spec.robot_file + ": has " + std::to_string(joint_links.size()) + " actuated joints, " + spec.id +
                  " needs " + std::to_string(spec.act_dim));
    for (const auto& foot : rules.feet) {
      int found = -2;
      for (int j = 0; j < n; ++j)
        if (rp.links[j].name == foot) found = j;
      if (found == -2) throw Error(spec.robot_file + ": foot body '" + foot + "' not found");
      foot_links.push_back(found);
    }
    joint_obs.assign(2 * joint_links.size(), 0.f);
    feet_contact.assign(foot_links.size(), 0.f);
    const int expected_obs = 8 + 2 * spec.act_dim + static_cast<int>(foot_links.size());
    if (expected_obs != spec.obs_dim)
      throw Error(spec.robot_file + ": gives " + std::to_string(expected_obs) + " observations, " + spec.id + " needs " +
                  std::to_string(spec.obs_dim));
  }

  btTransform com_frame(int link) const {
    const btMultiBody& mb = physics->robot();
    if (link >= 0) return mb.getLink(link).m_cachedWorldTransform;
    btTransform t;
    t.setOrigin(mb.getBasePos());
    t.setRotation(mb.getWorldToBaseRot().inverse());
    return t;
  }

  // getLinkState(computeLinkVelocity=1)[6] / getBaseVelocity: COM velocity in world axes.
  mutable btAlignedObjectArray<btVector3> velocity_scratch_omega, velocity_scratch_vel;
  btVector3 com_velocity(int link) const {
    const btMultiBody& mb = physics->robot();
    if (link < 0) return mb.getBaseVel();
    const int n = mb.getNumLinks();
    velocity_scratch_omega.resize(n + 1);
    velocity_scratch_vel.resize(n + 1);
    mb.compTreeLinkVelocities(&velocity_scratch_omega[0], &velocity_scratch_vel[0]);
    return mb.getLink(link).m_cachedWorldTransform.getBasis() * velocity_scratch_vel[link + 1];
  }

  void refresh_kinematics() {
    btMultiBody& mb = physics->robot();
    btAlignedObjectArray<btQuaternion> q;
    btAlignedObjectArray<btVector3> v;
    mb.forwardKinematics(q, v);
    mb.updateCollisionObjectWorldTransforms(q, v);
  }

  // WalkerBase.calc_state. Writes the observation; updates joint speeds,
  // joints_at_limit, body_rpy and (first time) initial_z.
  void observe(float* obs, bool first_after_reset) {
    const btMultiBody& mb = physics->robot();
    const RobotParts& rp = physics->robot_parts();
    joints_at_limit = 0;
    for (size_t k = 0; k < joint_links.size(); ++k) {
      const int link = joint_links[k];
      const LinkInfo& info = rp.links[link];
      const double lo = info.lower_limit, hi = info.upper_limit;
      const double mid = 0.5 * (lo + hi);
      const double q = mb.getJointPos(link), qd = mb.getJointVel(link);
      joint_obs[2 * k] = static_cast<float>(2 * (q - mid) / (hi - lo));
      joint_obs[2 * k + 1] = static_cast<float>(0.1 * qd);
      if (std::abs(joint_obs[2 * k]) > 0.99f) ++joints_at_limit;
    }
    const btTransform torso = com_frame(torso_link);
    double xs[128], ys[128];
    size_t count = 0;
    for (const Part& part : parts) {
      const btVector3 p = com_frame(part.link) * part.offset_in_com;
      xs[count] = p.x();
      ys[count] = p.y();
      ++count;
    }
    if (floor_in_parts) {
      xs[count] = 0;
      ys[count] = 0;
      ++count;
    }
    const double body_x = numpy_sum(xs, count) / count;
    const double body_y = numpy_sum(ys, count) / count;
    const double z = torso.getOrigin().z();
    body_rpy = euler_from_quaternion(torso.getRotation());
    if (first_after_reset) initial_z = z;
    const double yaw = body_rpy[2];
    const double theta = std::atan2(kTargetY - body_y, kTargetX - body_x);
    const double dy = kTargetY - body_y, dx = kTargetX - body_x;
    walk_target_dist = std::sqrt(dy * dy + dx * dx);
    const double angle_to_target = theta - yaw;
    const btVector3 v = com_velocity(torso_link);
    const double c = std::cos(-yaw), s = std::sin(-yaw);
    const double vx = c * v.x() + (-s) * v.y() + 0.0 * v.z();
    const double vy = s * v.x() + c * v.y() + 0.0 * v.z();
    const double vz = 0.0 * v.x() + 0.0 * v.y() + 1.0 * v.z();
    const float more[8] = {static_cast<float>(z - initial_z),     static_cast<float>(std::sin(angle_to_target)),
                           static_cast<float>(std::cos(angle_to_target)), static_cast<float>(0.3 * vx),
                           static_cast<float>(0.3 * vy),          static_cast<float>(0.3 * vz),
                           static_cast<float>(body_rpy[0]),       static_cast<float>(body_rpy[1])};
    size_t o = 0;
    for (float m : more) obs[o++] = m;
    for (float j : joint_obs) obs[o++] = j;
    for (float f : feet_contact) obs[o++] = f;
    for (size_t i = 0; i < o; ++i) obs[i] = std::clamp(obs[i], -5.f, 5.f);
  }

  double walk_target_dist = 0;
  double calc_potential() const { return -walk_target_dist / physics->scene().env_dt_s; }

  // restoreState + robot_specific_reset: root at its model pose and at rest,
  // actuated joints at the given state, no physics step before the observation.
  // Contact manifolds of the previous episode are dropped: the robot starts in
  // the air, where PyBullet's refresh would drop their points anyway, and an
  // episode then depends on its seed alone (docs/fidelity.md).
  void start_episode(const std::vector<double>& q, const std::vector<double>& qd, float* obs) {
    btMultiBody& mb = physics->robot();
    for (int link = 0; link < mb.getNumLinks(); ++link) {
      if (mb.getLink(link).m_jointType == btMultibodyLink::eFixed) continue;
      mb.setJointPos(link, 0);
      mb.setJointVel(link, 0);
    }
    if (!physics->robot_parts().fixed_base) {
      mb.setBasePos(base_start_position);
      mb.setWorldToBaseRot(btQuaternion::getIdentity());
      mb.setBaseVel(btVector3(0, 0, 0));
      mb.setBaseOmega(btVector3(0, 0, 0));
    }
    for (size_t k = 0; k < joint_links.size(); ++k) {
      mb.setJointPos(joint_links[k], q[k]);
      mb.setJointVel(joint_links[k], qd[k]);
    }
    mb.clearForcesAndTorques();
    refresh_kinematics();
    physics->forget_contacts();
    std::fill(feet_contact.begin(), feet_contact.end(), 0.f);
    steps = 0;
    observe(obs, true);
    potential = calc_potential();
    floor_in_parts = true;
  }
  btVector3 base_start_position{0, 0, 0};

  StepResult step(const double* a, float* obs) {
    for (int k = 0; k < spec.act_dim; ++k)
      if (!std::isfinite(a[k]))
        throw Error("action[" + std::to_string(k) + "] is not finite (" + std::to_string(a[k]) + ")");
    btMultiBody& mb = physics->robot();
    for (size_t k = 0; k < joint_links.size(); ++k) {
      const double torque = rules.power * power_coef[k] * std::clamp(a[k], -1.0, 1.0);
      mb.addJointTorque(joint_links[k], torque);
    }
    physics->step();
    ++steps;

    StepResult r;
    observe(obs, false);
    const double z = static_cast<double>(obs[0]) + initial_z;  // Python: state[0] (float32) + initial_z
    const double pitch = body_rpy[1];
    switch (rules.alive) {
      case AliveRule::UprightAbove08:
        r.terms.alive = (z > 0.8 && std::abs(pitch) < 1.0) ? 1.0 : -1.0;
        break;
      case AliveRule::CheetahNoBodyContact:
        r.terms.alive = (std::abs(pitch) < 1.0 && feet_contact[1] == 0 && feet_contact[2] == 0 &&
                         feet_contact[4] == 0 && feet_contact[5] == 0)
                            ? 1.0
                            : -1.0;
        break;
      case AliveRule::AntAbove026:
        r.terms.alive = z > 0.26 ? 1.0 : -1.0;
        break;
    }
    bool finite = true;
    for (int i = 0; i < spec.obs_dim; ++i) finite = finite && std::isfinite(obs[i]);
    r.terminated = (rules.can_terminate && r.terms.alive < 0) || !finite;

    const double old_potential = potential;
    potential = calc_potential();
    r.terms.progress = potential - old_potential;

    for (size_t i = 0; i < foot_links.size(); ++i)
      feet_contact[i] = physics->link_touches_ground(foot_links[i]) ? 1.f : 0.f;

    double power_use[16], torque_sq[16];
    const int n = spec.act_dim;
    for (int k = 0; k < n; ++k) {
      power_use[k] = std::abs(a[k] * static_cast<double>(joint_obs[2 * k + 1]));
      torque_sq[k] = a[k] * a[k];
    }
    r.terms.electricity = kElectricityCost * (numpy_sum(power_use, n) / n);
    r.terms.electricity += kStallTorqueCost * (numpy_sum(torque_sq, n) / n);
    r.terms.joints_at_limit = kJointsAtLimitCost * joints_at_limit;
    r.terms.feet_collision = 0;
    r.reward = 0.0 + r.terms.alive + r.terms.progress + r.terms.electricity + r.terms.joints_at_limit +
               r.terms.feet_collision;
    r.truncated = !r.terminated && steps >= spec.max_episode_steps;
    return r;
  }
};

LocomotionEnv::LocomotionEnv(const EnvSpec& spec) : impl_(std::make_unique<Impl>(spec)) {
  const btMultiBody& mb = impl_->physics->robot();
  impl_->base_start_position = mb.getBasePos();
}
LocomotionEnv::~LocomotionEnv() = default;
LocomotionEnv::LocomotionEnv(LocomotionEnv&&) noexcept = default;
LocomotionEnv& LocomotionEnv::operator=(LocomotionEnv&&) noexcept = default;

const EnvSpec& LocomotionEnv::spec() const { return impl_->spec; }
const std::vector<std::string>& LocomotionEnv::joint_names() const { return impl_->joint_names; }
int LocomotionEnv::elapsed_steps() const { return impl_->steps; }

void LocomotionEnv::reset(std::optional<uint64_t> seed, float* observation) {
  if (seed) impl_->rng.reseed(*seed);
  const size_t n = impl_->joint_links.size();
  std::vector<double> q(n), qd(n, 0.0);
  for (auto& v : q) v = impl_->rng.uniform(-0.1, 0.1);  // one draw per joint, in action order
  impl_->start_episode(q, qd, observation);
}

void LocomotionEnv::reset_to(const JointState& state, float* observation) {
  const size_t n = impl_->joint_links.size();
  if (state.positions.size() != n || state.velocities.size() != n)
    throw Error(impl_->spec.id + ": joint state needs " + std::to_string(n) + " positions and velocities, got " +
                std::to_string(state.positions.size()) + " and " + std::to_string(state.velocities.size()));
  for (size_t k = 0; k < n; ++k)
    if (!std::isfinite(state.positions[k]) || !std::isfinite(state.velocities[k]))
      throw Error(impl_->spec.id + ": joint state of '" + impl_->joint_names[k] + "' is not finite");
  impl_->start_episode(state.positions, state.velocities, observation);
}

StepResult LocomotionEnv::step(const double* action, float* observation) { return impl_->step(action, observation); }

std::vector<float> LocomotionEnv::reset_checked(std::optional<uint64_t> seed) {
  std::vector<float> obs(impl_->spec.obs_dim);
  reset(seed, obs.data());
  return obs;
}

StepResult LocomotionEnv::step_checked(const std::vector<double>& action, std::vector<float>& observation) {
  if (static_cast<int>(action.size()) != impl_->spec.act_dim)
    throw Error(impl_->spec.id + ": action has " + std::to_string(action.size()) + " values, expected " +
                std::to_string(impl_->spec.act_dim));
  observation.resize(impl_->spec.obs_dim);
  return step(action.data(), observation.data());
}

JointState LocomotionEnv::joint_state() const {
  JointState s;
  const btMultiBody& mb = impl_->physics->robot();
  for (int link : impl_->joint_links) {
    s.positions.push_back(mb.getJointPos(link));
    s.velocities.push_back(mb.getJointVel(link));
  }
  return s;
}

std::array<double, 3> LocomotionEnv::torso_xyz() const {
  btVector3 p = impl_->com_frame(impl_->torso_link).getOrigin();
  return {p.x(), p.y(), p.z()};
}

std::array<double, 3> LocomotionEnv::torso_rpy() const {
  return euler_from_quaternion(impl_->com_frame(impl_->torso_link).getRotation());
}

}  // namespace modiff::envs
