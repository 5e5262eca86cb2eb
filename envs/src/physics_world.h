#pragma once
// The Bullet world of one env, set up the way PyBullet's physics server and
// pybullet_envs' stadium scene set theirs up (docs/fidelity.md lists each
// setting and where it comes from): btMultiBodyDynamicsWorld with the
// multibody constraint solver, an OR collision filter, a static ground plane
// (body 0) and the robot (body 1) imported from MJCF.
#include <btBulletDynamicsCommon.h>
#include <BulletDynamics/Featherstone/btMultiBody.h>
#include <BulletDynamics/Featherstone/btMultiBodyConstraint.h>
#include <BulletDynamics/Featherstone/btMultiBodyConstraintSolver.h>
#include <BulletDynamics/Featherstone/btMultiBodyDynamicsWorld.h>
#include <BulletDynamics/Featherstone/btMultiBodyLinkCollider.h>

#include <memory>
#include <string>
#include <vector>

#include "modiff/envs/mjcf.h"

namespace modiff::envs {

// Scene constants of pybullet_envs' SinglePlayerStadiumScene.
struct SceneSettings {
  double gravity_z = -9.8;
  double env_dt_s = 0.0165;  // one env step
  int substeps = 4;          // physics steps per env step (0.0165 / 4 s each)
  int solver_iterations = 5;
  double contact_erp = 0.9;
  double ground_friction = 0.8;
  double ground_restitution = 0.5;
};

enum class LinkJointType { Fixed, Revolute, Continuous, Prismatic };

// What the importer knows about each multibody link (index = btMultiBody link index).
struct LinkInfo {
  std::string name;        // MJCF body name, or link0_N for a generated joint link
  std::string joint_name;  // MJCF joint name, or jointfix_N_M
  LinkJointType joint_type = LinkJointType::Fixed;
  double lower_limit = 0, upper_limit = 0;  // as PyBullet's getJointInfo reports them
  // PyBullet gives each joint a massless link and hangs the body below it on a
  // fixed joint; modiff folds the two into one link (same dynamics, half the
  // links). The folded-in joint link keeps its name for the "body parts" mean,
  // at `joint_frame_in_com` in this link's centre-of-mass frame.
  std::string joint_link_name;
  btVector3 joint_frame_in_com{0, 0, 0};
};

// Keeps the Bullet objects of one robot alive and in creation order.
struct RobotParts {
  btMultiBody* body = nullptr;
  std::string base_name;
  bool fixed_base = false;
  std::vector<LinkInfo> links;
  std::vector<std::unique_ptr<btCollisionShape>> shapes;
  std::vector<std::unique_ptr<btMultiBodyLinkCollider>> colliders;
  std::vector<std::unique_ptr<btMultiBodyConstraint>> constraints;
  std::unique_ptr<btMultiBody> owned_body;
};

class PhysicsWorld {
 public:
  PhysicsWorld(const MjcfModel& model, const SceneSettings& scene);
  ~PhysicsWorld();
  PhysicsWorld(const PhysicsWorld&) = delete;
  PhysicsWorld& operator=(const PhysicsWorld&) = delete;

  btMultiBody& robot() { return *robot_.body; }
  const btMultiBody& robot() const { return *robot_.body; }
  const RobotParts& robot_parts() const { return robot_; }
  const SceneSettings& scene() const { return scene_; }

  // One env step: stepSimulation(dt, substeps, dt / substeps). Joint torques
  // added before it act in every substep and are cleared afterwards.
  void step();

  // Drops the robot's contact manifolds; the next step rebuilds them from the
  // current poses.
  void forget_contacts();

  // Whether the persistent manifold between a robot link (-1 = base) and the
  // ground holds at least one point: PyBullet's getContactPoints test.
  bool link_touches_ground(int link) const;

 private:
  struct OrFilter : btOverlapFilterCallback {
    bool needBroadphaseCollision(btBroadphaseProxy* a, btBroadphaseProxy* b) const override {
      return (a->m_collisionFilterGroup & b->m_collisionFilterMask) != 0 ||
             (b->m_collisionFilterGroup & a->m_collisionFilterMask) != 0;
    }
  };

  void add_ground();

  SceneSettings scene_;
  OrFilter filter_;
  std::unique_ptr<btDefaultCollisionConfiguration> config_;
  std::unique_ptr<btCollisionDispatcher> dispatcher_;
  std::unique_ptr<btHashedOverlappingPairCache> pair_cache_;
  std::unique_ptr<btDbvtBroadphase> broadphase_;
  std::unique_ptr<btMultiBodyConstraintSolver> solver_;
  std::unique_ptr<btMultiBodyDynamicsWorld> world_;
  RobotParts ground_;
  RobotParts robot_;
};

// Builds the robot of an MJCF model into `world` as PyBullet's MJCF importer
// and URDF2Bullet do (pybullet_importer.cpp).
RobotParts import_mjcf_robot(const MjcfModel& model, btMultiBodyDynamicsWorld& world);

}  // namespace modiff::envs
