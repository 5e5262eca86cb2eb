#include "physics_world.h"

#include <BulletCollision/BroadphaseCollision/btDbvtBroadphase.h>

namespace modiff::envs {

PhysicsWorld::PhysicsWorld(const MjcfModel& model, const SceneSettings& scene) : scene_(scene) {
  // PyBullet's server zeroes the DBVT margin; the value is process-wide in Bullet
  // and every modiff world wants the same, so setting it each time is harmless.
  gDbvtMargin = 0;
  config_ = std::make_unique<btDefaultCollisionConfiguration>();
  dispatcher_ = std::make_unique<btCollisionDispatcher>(config_.get());
  pair_cache_ = std::make_unique<btHashedOverlappingPairCache>();
  pair_cache_->setOverlapFilterCallback(&filter_);
  broadphase_ = std::make_unique<btDbvtBroadphase>(pair_cache_.get());
  broadphase_->setVelocityPrediction(0);
  solver_ = std::make_unique<btMultiBodyConstraintSolver>();
  world_ = std::make_unique<btMultiBodyDynamicsWorld>(dispatcher_.get(), broadphase_.get(), solver_.get(),
                                                      config_.get());
  // The server's defaults, then the stadium scene's overrides (gravity, contact
  // ERP, iterations). solverMode keeps what the world's constructor set
  // (warm starting | SIMD | two friction directions).
  btContactSolverInfo& si = world_->getSolverInfo();
  si.m_erp2 = scene.contact_erp;
  si.m_frictionERP = 0.2;
  si.m_linearSlop = 0.00001;
  si.m_numIterations = scene.solver_iterations;
  si.m_minimumSolverBatchSize = 0;
  si.m_warmstartingFactor = 0.1;
  si.m_leastSquaresResidualThreshold = 1e-7;
  world_->setGravity(btVector3(0, 0, scene.gravity_z));
  // PyBullet processes overlapping pairs and island manifolds in a sorted,
  // deterministic order; without it contact rows are solved in another order
  // and trajectories part from PyBullet's at the first ground contact.
  world_->getDispatchInfo().m_deterministicOverlappingPairs = true;

  add_ground();
  robot_ = import_mjcf_robot(model, *world_);
}

PhysicsWorld::~PhysicsWorld() {
  // Constraints, bodies and colliders leave the world before they are freed.
  for (RobotParts* parts : {&robot_, &ground_}) {
    for (auto& c : parts->constraints) world_->removeMultiBodyConstraint(c.get());
    if (parts->body) world_->removeMultiBody(parts->body);
    for (auto& c : parts->colliders) world_->removeCollisionObject(c.get());
  }
}

void PhysicsWorld::add_ground() {
  // plane_stadium.sdf: one static link "floor" with an infinite plane at z = 0,
  // loaded as a fixed-base multibody without links.
  ground_.base_name = "floor";
  ground_.fixed_base = true;
  ground_.owned_body = std::make_unique<btMultiBody>(0, 0.0, btVector3(0, 0, 0), true, false);
  ground_.body = ground_.owned_body.get();
  ground_.body->setBaseWorldTransform(btTransform::getIdentity());
  ground_.shapes.push_back(std::make_unique<btStaticPlaneShape>(btVector3(0, 0, 1), 0));
  auto collider = std::make_unique<btMultiBodyLinkCollider>(ground_.body, -1);
  collider->setCollisionShape(ground_.shapes.back().get());
  collider->setWorldTransform(btTransform::getIdentity());
  collider->setCollisionFlags(collider->getCollisionFlags() | btCollisionObject::CF_STATIC_OBJECT);
  collider->setFriction(scene_.ground_friction);
  collider->setRestitution(scene_.ground_restitution);
  world_->addCollisionObject(collider.get(), btBroadphaseProxy::StaticFilter,
                             btBroadphaseProxy::AllFilter ^ btBroadphaseProxy::StaticFilter);
  ground_.body->setBaseCollider(collider.get());
  ground_.colliders.push_back(std::move(collider));
  ground_.body->finalizeMultiDof();
  world_->addMultiBody(ground_.body);
}

void PhysicsWorld::step() {
  const double dt = scene_.env_dt_s;
  world_->stepSimulation(dt, scene_.substeps, dt / scene_.substeps);
}

void PhysicsWorld::forget_contacts() {
  for (auto& c : robot_.colliders) pair_cache_->cleanProxyFromPairs(c->getBroadphaseHandle(), dispatcher_.get());
}

bool PhysicsWorld::link_touches_ground(int link) const {
  const btCollisionObject* ground = ground_.colliders.front().get();
  const btCollisionObject* part =
      link < 0 ? robot_.body->getBaseCollider() : robot_.body->getLink(link).m_collider;
  if (!part) return false;
  const int n = dispatcher_->getNumManifolds();
  for (int i = 0; i < n; ++i) {
    const btPersistentManifold* m = dispatcher_->getManifoldByIndexInternal(i);
    const bool pair = (m->getBody0() == part && m->getBody1() == ground) ||
                      (m->getBody0() == ground && m->getBody1() == part);
    if (pair && m->getNumContacts() > 0) return true;
  }
  return false;
}

}  // namespace modiff::envs
