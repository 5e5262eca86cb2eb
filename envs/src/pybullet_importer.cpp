// Turns an MJCF model into a btMultiBody the way PyBullet does it: its MJCF
// importer (BulletMJCFImporter) makes a URDF-like link tree, URDF2Bullet turns
// that into a multibody, and the physics server adds default joint motors.
// The rules below are PyBullet's, including its quirks, because the bullet-D4RL
// data were recorded on them (docs/fidelity.md explains each one):
// - every parsed number passes through single precision (the importer stores
//   vector attributes as float), except sphere radii;
// - each MJCF joint gets its own massless link; the body's own link hangs below
//   the last one on a fixed joint; a root body with joints gets a massless,
//   fixed base;
// - mass is 1000 x geom volume (density and settotalmass ignored) unless an
//   <inertial mass> is given; the centre of mass is the midpoint of the body's
//   last fromto capsule, else the body origin;
// - inertia is Bullet's calculateLocalInertia of the link's compound shape (a
//   box approximation over its AABB), principal axes along the link frame;
// - joint axes are not normalised; damping, armature and stiffness are ignored.
#include <BulletCollision/CollisionShapes/btMultiSphereShape.h>
#include <BulletDynamics/Featherstone/btMultiBodyJointLimitConstraint.h>

#include <cmath>
#include <deque>
#include <functional>

#include "modiff/common/error.h"
#include "physics_world.h"

namespace modiff::envs {
namespace {

// Single precision, as PyBullet's importer stores parsed numbers. The float goes through a volatile: GCC 12
// drops a plain (double)(float)x round trip in C++ (its only excess-precision mode there is "fast"), GCC 13
// keeps it, so without it the robot models, and every result after them, depended on the compiler.
double f32(double v) {
  volatile float rounded = static_cast<float>(v);
  return rounded;
}
btVector3 f32(const Vec3& v) { return btVector3(f32(v[0]), f32(v[1]), f32(v[2])); }

struct GeomShape {
  std::unique_ptr<btCollisionShape> shape;
  btTransform frame;  // in the body frame
};

// A link of the importer's URDF-like tree, in creation (= multibody) order.
struct TreeLink {
  std::string name;
  int parent = -1;
  LinkJointType joint = LinkJointType::Fixed;
  std::string joint_name;
  btVector3 axis{0, 0, 0};
  double lower = 0, upper = 0;
  btTransform parent_to_joint = btTransform::getIdentity();  // in the parent's link frame
  btTransform world = btTransform::getIdentity();            // link frame at q = 0
  std::vector<GeomShape> geoms;
  double mass = 0;
  btVector3 inertial_origin{0, 0, 0};
  double friction = 0.5;  // Bullet's default for links without geoms
  int group = 0, mask = 0;
  bool has_geoms = false;
  std::string joint_link_name;  // set when a massless joint link was folded into this link
};

// Folds each body link into the massless joint link it hangs from by a fixed
// joint. PyBullet builds them as two links; the merged link has the same joint,
// mass, centre of mass, inertia and shapes, so the dynamics are the same while
// every O(links) pass of the articulated-body solver does about half the work.
// Only the floating-point rounding of the chained frames differs.
std::deque<TreeLink> fold_joint_links(std::deque<TreeLink> tree) {
  std::vector<int> children(tree.size(), 0);
  for (const auto& l : tree)
    if (l.parent >= 0) ++children[l.parent];
  std::vector<int> new_index(tree.size(), -1);
  std::vector<bool> folded_into_parent(tree.size(), false);
  for (size_t i = 1; i < tree.size(); ++i) {
    const TreeLink& l = tree[i];
    const TreeLink& p = tree[l.parent];
    folded_into_parent[i] = l.joint == LinkJointType::Fixed && l.parent > 0 && p.joint != LinkJointType::Fixed &&
                            p.mass == 0 && !p.has_geoms && children[l.parent] == 1;
  }
  std::deque<TreeLink> out;
  for (size_t i = 0; i < tree.size(); ++i) {
    TreeLink& l = tree[i];
    if (!folded_into_parent[i]) {
      new_index[i] = static_cast<int>(out.size());
      if (l.parent >= 0) l.parent = new_index[l.parent];
      out.push_back(std::move(l));
      continue;
    }
    TreeLink& host = out[new_index[l.parent]];
    new_index[i] = new_index[l.parent];
    const btTransform body_in_host = l.parent_to_joint;
    host.joint_link_name = host.name;
    host.name = l.name;
    host.mass = l.mass;
    host.inertial_origin = body_in_host * l.inertial_origin;
    for (auto& g : l.geoms) {
      g.frame = body_in_host * g.frame;
      host.geoms.push_back(std::move(g));
    }
    host.friction = l.friction;
    host.group = l.group;
    host.mask = l.mask;
    host.has_geoms = l.has_geoms;
    // Children of the folded body now hang from the host: re-express their joint frames.
    for (size_t c = i + 1; c < tree.size(); ++c)
      if (tree[c].parent == static_cast<int>(i)) tree[c].parent_to_joint = body_in_host * tree[c].parent_to_joint;
  }
  return out;
}

class TreeBuilder {
 public:
  explicit TreeBuilder(const MjcfModel& model) : model_(model) {}

  std::deque<TreeLink> build() {
    if (model_.bodies.size() != 1)
      throw Error(model_.source + ": expected exactly one top-level <body> (the robot), found " +
                  std::to_string(model_.bodies.size()));
    add_body(model_.bodies.front(), -1, btTransform::getIdentity());
    return std::move(links_);
  }

 private:
  int new_link(const std::string& name) {
    TreeLink l;
    l.name = name.empty() ? "link0_" + std::to_string(links_.size() + 1) : name;
    links_.push_back(std::move(l));
    return static_cast<int>(links_.size()) - 1;
  }

  static btTransform body_frame(const MjcfBody& b) {
    btTransform t = btTransform::getIdentity();
    t.setOrigin(f32(b.pos));
    if (b.quat) t.setRotation(btQuaternion(f32((*b.quat)[1]), f32((*b.quat)[2]), f32((*b.quat)[3]), f32((*b.quat)[0])));
    return t;
  }

  void set_joint(TreeLink& link, const MjcfJoint& j) {
    link.joint_name = j.name;
    link.axis = f32(j.axis);
    if (j.type == JointType::Slide) {
      link.joint = LinkJointType::Prismatic;
      // An unlimited slide keeps PyBullet's "no limit" range (1, 0).
      link.lower = j.limited ? f32(j.range_lo) : 1.0;
      link.upper = j.limited ? f32(j.range_hi) : 0.0;
    } else if (j.limited) {
      link.joint = LinkJointType::Revolute;
      // Degrees become radians only here, for limited hinges (multiply, then divide).
      link.lower = model_.angles_in_degrees ? f32(j.range_lo) * M_PI / 180.0 : f32(j.range_lo);
      link.upper = model_.angles_in_degrees ? f32(j.range_hi) * M_PI / 180.0 : f32(j.range_hi);
    } else {
      link.joint = LinkJointType::Continuous;
      link.lower = 1.0;
      link.upper = 0.0;
    }
  }

  void add_body(const MjcfBody& body, int parent_link, const btTransform& parent_world) {
    const btTransform body_tf = body_frame(body);
    const btTransform body_world = parent_world * body_tf;
    std::vector<const MjcfJoint*> joints;
    for (const auto& j : body.joints) {
      if (j.type == JointType::Free) {
        if (parent_link != -1)
          throw Error(model_.source + ":" + std::to_string(j.line) + ": a free joint is only supported on the root body");
        continue;  // the root body becomes a floating base
      }
      joints.push_back(&j);
    }

    int attach_to = parent_link;
    btTransform attach_frame = body_tf;  // body link frame in the attach link's frame
    if (!joints.empty()) {
      if (parent_link == -1) {
        // A jointed root hangs from a massless, hence fixed, base link.
        attach_to = new_link("");
        links_[attach_to].world = btTransform::getIdentity();
      }
      btTransform previous_joint_tf = btTransform::getIdentity();
      for (size_t k = 0; k < joints.size(); ++k) {
        btTransform joint_tf = btTransform::getIdentity();
        joint_tf.setOrigin(f32(joints[k]->pos));
        const int idx = new_link("");
        TreeLink& jl = links_[idx];
        jl.parent = attach_to;
        jl.parent_to_joint = k == 0 ? body_tf * joint_tf : previous_joint_tf.inverse() * joint_tf;
        jl.world = body_world * joint_tf;
        set_joint(jl, *joints[k]);
        attach_to = idx;
        previous_joint_tf = joint_tf;
      }
      attach_frame = previous_joint_tf.inverse();
    }

    const int idx = new_link(body.name);
    TreeLink& link = links_[idx];
    link.parent = attach_to;
    link.parent_to_joint = attach_frame;
    link.world = body_world;
    link.joint = LinkJointType::Fixed;
    link.joint_name = "jointfix_" + std::to_string(idx);
    add_geoms(link, body);
    for (const auto& child : body.children) add_body(child, idx, body_world);
  }

  void add_geoms(TreeLink& link, const MjcfBody& body) {
    double volume = 0;
    bool origin_fixed_by_inertial = false;
    for (const auto& g : body.geoms) {
      GeomShape gs;
      gs.frame = btTransform::getIdentity();
      btVector3 geom_origin_for_com(0, 0, 0);
      if (g.type == GeomType::Capsule && g.fromto) {
        const auto& ft = *g.fromto;
        btVector3 from(f32(ft[0]), f32(ft[1]), f32(ft[2])), to(f32(ft[3]), f32(ft[4]), f32(ft[5]));
        const double r = f32(g.size[0]);
        btVector3 centres[2] = {from, to};
        btScalar radii[2] = {r, r};
        gs.shape = std::make_unique<btMultiSphereShape>(centres, radii, 2);
        volume += 4.0 / 3.0 * SIMD_PI * r * r * r;
        volume += SIMD_PI * r * r * (to - from).length();
        geom_origin_for_com = 0.5 * (from + to);
      } else if (g.type == GeomType::Capsule) {
        const double r = f32(g.size[0]);
        const double height = f32(2.0 * f32(g.size[1]));
        gs.shape = std::make_unique<btCapsuleShapeZ>(r, height);
        gs.frame.setOrigin(f32(g.pos));
        gs.frame.setRotation(geom_rotation(g));
        volume += 4.0 / 3.0 * SIMD_PI * r * r * r;
        volume += SIMD_PI * r * r * height;
      } else if (g.type == GeomType::Sphere) {
        const double r = g.size[0];  // read as a double by the importer
        gs.shape = std::make_unique<btSphereShape>(r);
        gs.frame.setOrigin(f32(g.pos));
        volume += 4.0 / 3.0 * SIMD_PI * r * r * r;
      } else {
        throw Error(model_.source + ":" + std::to_string(g.line) + ": geom '" + g.name +
                    "': only capsules and spheres are supported by the importer");
      }
      if (!origin_fixed_by_inertial) link.inertial_origin = geom_origin_for_com;
      link.friction = f32(g.friction[0]);
      link.group = g.contype;
      link.mask = g.conaffinity;
      link.has_geoms = true;
      link.geoms.push_back(std::move(gs));
    }
    link.mass = 1000.0 * volume;
    if (body.inertial) {
      if (body.inertial->mass) link.mass = *body.inertial->mass;
      link.inertial_origin = body.inertial->pos ? f32(*body.inertial->pos) : btVector3(0, 0, 0);
      origin_fixed_by_inertial = true;
    }
  }

  btQuaternion geom_rotation(const MjcfGeom& g) const {
    if (g.quat) return btQuaternion(f32((*g.quat)[1]), f32((*g.quat)[2]), f32((*g.quat)[3]), f32((*g.quat)[0]));
    if (g.axisangle) {
      const auto& aa = *g.axisangle;
      double angle = f32(aa[3]);
      if (model_.angles_in_degrees) angle = angle * M_PI / 180.0;
      btQuaternion q;
      q.setRotation(btVector3(f32(aa[0]), f32(aa[1]), f32(aa[2])), angle);
      return q;
    }
    return btQuaternion::getIdentity();
  }

  const MjcfModel& model_;
  std::deque<TreeLink> links_;  // deque: references stay valid while links are added
};

// Where btAlignedObjectArray::quickSort moves each element when all keys are
// equal: result[p] = the original index now at position p. (Its partition
// swaps equal elements, so this is a fixed permutation of the array size.)
std::vector<int> equal_key_quicksort_order(int n) {
  std::vector<int> a(n);
  for (int i = 0; i < n; ++i) a[i] = i;
  std::function<void(int, int)> sort = [&](int lo, int hi) {
    int i = lo, j = hi;
    do {
      if (i <= j) std::swap(a[i++], a[j--]);
    } while (i <= j);
    if (lo < j) sort(lo, j);
    if (i < hi) sort(i, hi);
  };
  if (n > 1) sort(0, n - 1);
  return a;
}

// One collision shape per link: a compound of its geoms placed relative to the centre of mass, or the single geom
// itself when it sits exactly there. Fills `shape` and `inertia` per tree link; `out` owns the shapes.
void build_link_shapes(std::deque<TreeLink>& tree, RobotParts& out, std::vector<btCollisionShape*>& shape,
                       std::vector<btVector3>& inertia) {
  shape.assign(tree.size(), nullptr);
  inertia.assign(tree.size(), btVector3(0, 0, 0));
  for (size_t i = 0; i < tree.size(); ++i) {
    TreeLink& l = tree[i];
    btTransform inertial_frame = btTransform::getIdentity();
    inertial_frame.setOrigin(l.inertial_origin);
    auto compound = std::make_unique<btCompoundShape>();
    for (auto& g : l.geoms) {
      compound->addChildShape(inertial_frame.inverse() * g.frame, g.shape.get());
      out.shapes.push_back(std::move(g.shape));
    }
    btCollisionShape* chosen = compound.get();
    if (compound->getNumChildShapes() == 1 && compound->getChildTransform(0) == btTransform::getIdentity())
      chosen = compound->getChildShape(0);
    if (l.mass > 0) chosen->calculateLocalInertia(l.mass, inertia[i]);
    shape[i] = chosen;
    out.shapes.push_back(std::move(compound));
  }
}

// The collider of tree link `l` (multibody link `mb_link`, -1 for the base), in the collision groups PyBullet
// gives it, added to the world.
void add_collider(const TreeLink& l, btCollisionShape* shape, int mb_link, btMultiBody* mb,
                  btMultiBodyDynamicsWorld& world, RobotParts& out) {
  auto col = std::make_unique<btMultiBodyLinkCollider>(mb, mb_link);
  col->setCollisionShape(shape);
  btTransform com_world = l.world;
  com_world.setOrigin(l.world * l.inertial_origin);
  col->setWorldTransform(com_world);
  col->setFriction(l.friction);
  int group = btBroadphaseProxy::DefaultFilter, mask = btBroadphaseProxy::AllFilter;
  if (mb_link == -1 && out.fixed_base) {
    group = btBroadphaseProxy::StaticFilter;
    mask = btBroadphaseProxy::AllFilter ^ btBroadphaseProxy::StaticFilter;
    col->setCollisionFlags(col->getCollisionFlags() | btCollisionObject::CF_STATIC_OBJECT);
  }
  if (l.has_geoms) {
    group = l.group;
    mask = l.mask;
  }
  world.addCollisionObject(col.get(), group, mask);
  if (mb_link == -1) mb->setBaseCollider(col.get());
  else mb->getLink(mb_link).m_collider = col.get();
  out.colliders.push_back(std::move(col));
}

// Multibody link `link` from tree link `l` under `p`: its joint set up in URDF2Bullet's frames (joint pivot
// relative to the parent's COM, COM relative to the pivot; inertial frames never rotate here, so the joint axis
// stays in the link frame as written), its limits, and a limit constraint where the joint has one.
LinkInfo set_up_link(const TreeLink& l, const TreeLink& p, int link, int parent, const btVector3& inertia,
                     btMultiBody* mb, RobotParts& out) {
  const btVector3 parent_com_to_pivot = l.parent_to_joint.getOrigin() - p.inertial_origin;
  const btVector3 pivot_to_com = l.inertial_origin;
  const btQuaternion rot_parent_to_this = l.parent_to_joint.getRotation().inverse();
  switch (l.joint) {
    case LinkJointType::Fixed:
      mb->setupFixed(link, l.mass, inertia, parent, rot_parent_to_this, parent_com_to_pivot, pivot_to_com);
      break;
    case LinkJointType::Revolute:
    case LinkJointType::Continuous:
      mb->setupRevolute(link, l.mass, inertia, parent, rot_parent_to_this, l.axis, parent_com_to_pivot,
                        pivot_to_com, true);
      break;
    case LinkJointType::Prismatic:
      mb->setupPrismatic(link, l.mass, inertia, parent, rot_parent_to_this, l.axis, parent_com_to_pivot,
                         pivot_to_com, true);
      break;
  }
  mb->getLink(link).m_jointLowerLimit = l.lower;
  mb->getLink(link).m_jointUpperLimit = l.upper;
  mb->getLink(link).m_flags |= BT_MULTIBODYLINKFLAGS_DISABLE_ALL_PARENT_COLLISION;
  const bool limited = l.joint == LinkJointType::Revolute ||
                       (l.joint == LinkJointType::Prismatic && l.lower <= l.upper);
  if (limited) out.constraints.push_back(std::make_unique<btMultiBodyJointLimitConstraint>(mb, link, l.lower, l.upper));
  LinkInfo info;
  info.name = l.name;
  info.joint_name = l.joint_name;
  info.joint_type = l.joint;
  info.lower_limit = l.lower;
  info.upper_limit = l.upper;
  info.joint_link_name = l.joint_link_name;
  info.joint_frame_in_com = -l.inertial_origin;
  return info;
}

// PyBullet's server also gives every 1-dof joint a velocity motor, added after the limits, which pybullet_envs
// switches off (position control with force 0). Their rows are bounded by [0, 0] and never apply an impulse, but
// they change where the limits land when Bullet sorts the multibody constraints by island each substep (an
// unstable quicksort over equal keys). modiff leaves the motors out, which saves a row setup per joint and
// substep, and adds the limits in the order that puts them, after that sort, exactly where PyBullet's solver
// sees them.
void add_limits_in_pybullet_order(btMultiBody* mb, btMultiBodyDynamicsWorld& world, RobotParts& out) {
  int motors = 0;
  for (int link = 0; link < mb->getNumLinks(); ++link) {
    const auto type = mb->getLink(link).m_jointType;
    motors += type == btMultibodyLink::eRevolute || type == btMultibodyLink::ePrismatic;
  }
  const int limits = static_cast<int>(out.constraints.size());
  const std::vector<int> with_motors = equal_key_quicksort_order(limits + motors);
  std::vector<int> wanted;  // limit indices in the order PyBullet's sort leaves them
  for (int original : with_motors)
    if (original < limits) wanted.push_back(original);
  const std::vector<int> alone = equal_key_quicksort_order(limits);
  std::vector<int> insertion(limits);
  for (int position = 0; position < limits; ++position) insertion[alone[position]] = wanted[position];
  std::vector<std::unique_ptr<btMultiBodyConstraint>> ordered;
  for (int index : insertion) {
    world.addMultiBodyConstraint(out.constraints[index].get());
    ordered.push_back(std::move(out.constraints[index]));
  }
  out.constraints = std::move(ordered);
}

}  // namespace

RobotParts import_mjcf_robot(const MjcfModel& model, btMultiBodyDynamicsWorld& world) {
  std::deque<TreeLink> tree = fold_joint_links(TreeBuilder(model).build());
  RobotParts out;
  const TreeLink& root = tree.front();
  out.base_name = root.name;
  out.fixed_base = root.mass == 0;
  const int num_links = static_cast<int>(tree.size()) - 1;
  std::vector<btCollisionShape*> link_shape;
  std::vector<btVector3> inertia;
  build_link_shapes(tree, out, link_shape, inertia);

  out.owned_body = std::make_unique<btMultiBody>(num_links, root.mass, inertia[0], out.fixed_base, false);
  btMultiBody* mb = out.body = out.owned_body.get();
  btTransform base_world = root.world;
  base_world.setOrigin(root.world * root.inertial_origin);
  mb->setBaseWorldTransform(base_world);
  mb->setHasSelfCollision(true);

  add_collider(tree[0], link_shape[0], -1, mb, world, out);
  for (int i = 1; i <= num_links; ++i) {
    const TreeLink& l = tree[i];
    out.links.push_back(set_up_link(l, tree[l.parent], i - 1, l.parent - 1, inertia[i], mb, out));
    add_collider(l, link_shape[i], i - 1, mb, world, out);
  }

  mb->finalizeMultiDof();
  btAlignedObjectArray<btQuaternion> scratch_q;
  btAlignedObjectArray<btVector3> scratch_v;
  mb->forwardKinematics(scratch_q, scratch_v);
  mb->updateCollisionObjectWorldTransforms(scratch_q, scratch_v);
  world.addMultiBody(mb);
  add_limits_in_pybullet_order(mb, world, out);
  mb->finalizeMultiDof();
  return out;
}

}  // namespace modiff::envs
