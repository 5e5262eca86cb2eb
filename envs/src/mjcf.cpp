#include "modiff/envs/mjcf.h"

#include <tinyxml2.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "modiff/common/error.h"

namespace modiff::envs {
namespace {

// Attributes each element may carry. `used` ones are read into the model;
// `ignored` ones belong to MuJoCo's solver or renderer, which PyBullet's
// importer does not read either (see docs/fidelity.md).
struct ElementRules {
  std::set<std::string> used;
  std::set<std::string> ignored;
};

const std::map<std::string, ElementRules>& rules() {
  static const std::map<std::string, ElementRules> r = {
      {"mujoco", {{"model"}, {}}},
      {"compiler", {{"angle", "coordinate", "inertiafromgeom", "settotalmass"}, {}}},
      {"option", {{}, {"timestep", "integrator", "gravity"}}},
      {"default", {{}, {}}},
      {"worldbody", {{}, {}}},
      {"actuator", {{}, {}}},
      {"body", {{"name", "pos", "quat"}, {}}},
      {"joint",
       {{"name", "type", "axis", "pos", "range", "limited", "damping", "armature", "stiffness", "ref"},
        {"margin", "solimplimit", "solreflimit"}}},
      {"geom",
       {{"name", "type", "size", "fromto", "pos", "quat", "axisangle", "density", "mass", "friction", "contype",
         "conaffinity", "condim"},
        {"margin", "solimp", "solref", "rgba", "material"}}},
      {"inertial", {{"mass", "pos"}, {}}},
      {"motor", {{"name", "joint", "gear", "ctrllimited", "ctrlrange"}, {}}},
  };
  return r;
}

// An element's attributes merged over the <default> ones of its kind.
struct Attrs {
  std::map<std::string, std::string> values;
  std::string element;
  int line = 0;
  const std::string* source = nullptr;

  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw Error(*source + ":" + std::to_string(line) + ": <" + element + "> attribute '" + key + "': " + why);
  }
  bool has(const std::string& key) const { return values.count(key) != 0; }
  std::string str(const std::string& key, const std::string& fallback = "") const {
    auto it = values.find(key);
    return it == values.end() ? fallback : it->second;
  }
  std::vector<double> numbers(const std::string& key) const {
    std::vector<double> out;
    std::istringstream in(str(key));
    std::string token;
    while (in >> token) {
      char* end = nullptr;
      double v = std::strtod(token.c_str(), &end);
      if (end == token.c_str() || *end != '\0' || !std::isfinite(v)) fail(key, "'" + token + "' is not a finite number");
      out.push_back(v);
    }
    return out;
  }
  std::vector<double> numbers(const std::string& key, size_t count) const {
    auto v = numbers(key);
    if (v.size() != count) fail(key, "expected " + std::to_string(count) + " numbers, got " + std::to_string(v.size()));
    return v;
  }
  double number(const std::string& key, double fallback) const { return has(key) ? numbers(key, 1)[0] : fallback; }
  Vec3 vec3(const std::string& key, Vec3 fallback) const {
    if (!has(key)) return fallback;
    auto v = numbers(key, 3);
    return {v[0], v[1], v[2]};
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const std::string v = str(key);
    if (v == "true") return true;
    if (v == "false") return false;
    fail(key, "expected true or false, got '" + v + "'");
  }
  int integer(const std::string& key, int fallback) const {
    double v = number(key, fallback);
    if (v != std::floor(v)) fail(key, "expected an integer");
    return static_cast<int>(v);
  }
};

class Parser {
 public:
  Parser(const std::string& source, MjcfModel& model) : source_(source), model_(model) {}

  void parse_root(const tinyxml2::XMLElement* root) {
    if (std::string(root->Name()) != "mujoco")
      throw Error(source_ + ":" + std::to_string(root->GetLineNum()) + ": root element must be <mujoco>, got <" +
                  root->Name() + ">");
    model_.name = attrs(root).str("model");
    // <compiler> and <default> change how everything else reads, so take them first.
    for (auto* e = root->FirstChildElement(); e; e = e->NextSiblingElement()) {
      const std::string name = e->Name();
      if (name == "compiler") parse_compiler(e);
      if (name == "default") parse_default(e);
    }
    for (auto* e = root->FirstChildElement(); e; e = e->NextSiblingElement()) {
      const std::string name = e->Name();
      if (name == "compiler" || name == "default") continue;
      if (name == "option") {
        attrs(e);  // validated; PyBullet's scene, not the model, sets gravity and timestep
        no_children(e);
      } else if (name == "worldbody") {
        attrs(e);
        for (auto* b = e->FirstChildElement(); b; b = b->NextSiblingElement()) {
          if (std::string(b->Name()) != "body") unsupported(b, "<worldbody> may only hold <body>");
          model_.bodies.push_back(parse_body(b));
        }
      } else if (name == "actuator") {
        attrs(e);
        for (auto* m = e->FirstChildElement(); m; m = m->NextSiblingElement()) {
          if (std::string(m->Name()) != "motor") unsupported(m, "<actuator> may only hold <motor>");
          model_.motors.push_back(parse_motor(m));
        }
      } else {
        unsupported(e, "unsupported element");
      }
    }
  }

 private:
  [[noreturn]] void unsupported(const tinyxml2::XMLElement* e, const std::string& why) const {
    throw Error(source_ + ":" + std::to_string(e->GetLineNum()) + ": " + why + ": <" + e->Name() + ">");
  }

  void no_children(const tinyxml2::XMLElement* e) const {
    if (auto* c = e->FirstChildElement()) unsupported(c, std::string("unsupported child of <") + e->Name() + ">");
  }

  // Validates the element's own attributes and merges them over its defaults.
  Attrs attrs(const tinyxml2::XMLElement* e) {
    const std::string element = e->Name();
    auto rule = rules().find(element);
    if (rule == rules().end()) unsupported(e, "unsupported element");
    Attrs a;
    a.element = element;
    a.line = e->GetLineNum();
    a.source = &source_;
    if (auto d = defaults_.find(element); d != defaults_.end()) a.values = d->second;
    for (auto* at = e->FirstAttribute(); at; at = at->Next()) {
      const std::string key = at->Name();
      if (rule->second.used.count(key)) {
        a.values[key] = at->Value();
      } else if (rule->second.ignored.count(key)) {
        model_.ignored_attributes.push_back(element + "@" + key + " (line " + std::to_string(a.line) + ")");
      } else {
        throw Error(source_ + ":" + std::to_string(a.line) + ": unsupported attribute '" + key + "' on <" + element +
                    ">");
      }
    }
    return a;
  }

  void parse_compiler(const tinyxml2::XMLElement* e) {
    Attrs a = attrs(e);
    no_children(e);
    const std::string angle = a.str("angle", "degree");
    if (angle != "degree" && angle != "radian") a.fail("angle", "expected degree or radian, got '" + angle + "'");
    model_.angles_in_degrees = angle == "degree";
    const std::string coord = a.str("coordinate", "local");
    if (coord != "local" && coord != "global") a.fail("coordinate", "expected local or global, got '" + coord + "'");
    model_.global_coordinates = coord == "global";
    const std::string inertia = a.str("inertiafromgeom", "true");
    if (inertia != "true") a.fail("inertiafromgeom", "only 'true' is supported (inertia always comes from geoms)");
    if (a.has("settotalmass")) model_.total_mass = a.number("settotalmass", 0);
  }

  void parse_default(const tinyxml2::XMLElement* e) {
    Attrs own = attrs(e);
    (void)own;
    if (e->Attribute("class")) unsupported(e, "default classes are not supported");
    for (auto* c = e->FirstChildElement(); c; c = c->NextSiblingElement()) {
      const std::string kind = c->Name();
      if (kind != "joint" && kind != "geom" && kind != "motor") unsupported(c, "unsupported default");
      Attrs a = attrs(c);
      no_children(c);
      for (auto& [k, v] : a.values) defaults_[kind][k] = v;
    }
  }

  void check_global_frame(const Attrs& a) const {
    // With coordinate="global" MJCF positions are world positions. modiff supports
    // the case pybullet_data uses: bodies without pos/quat, so body frames are the
    // world frame and global equals local.
    if (model_.global_coordinates && (a.has("pos") || a.has("quat")) && a.element == "body")
      a.fail(a.has("pos") ? "pos" : "quat", "body frames are not supported with coordinate=\"global\"");
  }

  std::optional<Quat> quaternion(const Attrs& a) const {
    if (!a.has("quat")) return std::nullopt;
    auto q = a.numbers("quat", 4);
    if (q[0] == 0 && q[1] == 0 && q[2] == 0 && q[3] == 0) a.fail("quat", "zero quaternion");
    return Quat{q[0], q[1], q[2], q[3]};
  }

  MjcfBody parse_body(const tinyxml2::XMLElement* e) {
    Attrs a = attrs(e);
    check_global_frame(a);
    MjcfBody body;
    body.name = a.str("name");
    body.pos = a.vec3("pos", {0, 0, 0});
    body.quat = quaternion(a);
    body.line = a.line;
    for (auto* c = e->FirstChildElement(); c; c = c->NextSiblingElement()) {
      const std::string kind = c->Name();
      if (kind == "joint") {
        body.joints.push_back(parse_joint(c));
      } else if (kind == "geom") {
        body.geoms.push_back(parse_geom(c));
      } else if (kind == "body") {
        body.children.push_back(parse_body(c));
      } else if (kind == "inertial") {
        if (body.inertial) unsupported(c, "second <inertial> in one body");
        Attrs ia = attrs(c);
        no_children(c);
        MjcfInertial in;
        if (ia.has("mass")) in.mass = ia.number("mass", 0);
        if (ia.has("pos")) in.pos = ia.vec3("pos", {0, 0, 0});
        if (in.mass && *in.mass <= 0) ia.fail("mass", "must be positive");
        body.inertial = in;
      } else {
        unsupported(c, "unsupported element in <body>");
      }
    }
    return body;
  }

  MjcfJoint parse_joint(const tinyxml2::XMLElement* e) {
    Attrs a = attrs(e);
    no_children(e);
    MjcfJoint j;
    j.name = a.str("name");
    j.line = a.line;
    if (j.name.empty()) a.fail("name", "every joint needs a name");
    const std::string type = a.str("type", "hinge");
    if (type == "hinge") j.type = JointType::Hinge;
    else if (type == "slide") j.type = JointType::Slide;
    else if (type == "free") j.type = JointType::Free;
    else a.fail("type", "unsupported joint type '" + type + "'");
    j.axis = a.vec3("axis", {0, 0, 1});
    // Kept as written, not normalised: PyBullet passes it to Bullet unnormalised
    // (ant's ankles use (+-1, 1, 0)), which scales the joint coordinate.
    if (j.axis[0] == 0 && j.axis[1] == 0 && j.axis[2] == 0) a.fail("axis", "zero axis");
    j.pos = a.vec3("pos", {0, 0, 0});
    j.limited = a.boolean("limited", false);
    if (a.has("range")) {
      auto r = a.numbers("range", 2);
      j.has_range = true;
      j.range_lo = r[0];
      j.range_hi = r[1];
      if (j.limited && j.range_lo > j.range_hi) a.fail("range", "lower bound above upper bound");
    } else if (j.limited) {
      a.fail("range", "limited joint without range");
    }
    j.damping = a.number("damping", 0);
    j.armature = a.number("armature", 0);
    j.stiffness = a.number("stiffness", 0);
    j.ref = a.number("ref", 0);
    return j;
  }

  MjcfGeom parse_geom(const tinyxml2::XMLElement* e) {
    Attrs a = attrs(e);
    no_children(e);
    MjcfGeom g;
    g.name = a.str("name");
    g.line = a.line;
    const std::string type = a.str("type", "sphere");
    if (type == "capsule") g.type = GeomType::Capsule;
    else if (type == "sphere") g.type = GeomType::Sphere;
    else if (type == "box") g.type = GeomType::Box;
    else if (type == "cylinder") g.type = GeomType::Cylinder;
    else a.fail("type", "unsupported geom type '" + type + "'");
    if (!a.has("size")) a.fail("size", "missing");
    g.size = a.numbers("size");
    for (double s : g.size)
      if (s <= 0) a.fail("size", "sizes must be positive");
    if (a.has("fromto")) {
      if (g.type != GeomType::Capsule && g.type != GeomType::Cylinder) a.fail("fromto", "only capsules and cylinders");
      if (a.has("pos") || a.has("quat") || a.has("axisangle")) a.fail("fromto", "fromto excludes pos/quat/axisangle");
      auto v = a.numbers("fromto", 6);
      g.fromto = std::array<double, 6>{v[0], v[1], v[2], v[3], v[4], v[5]};
    }
    const size_t needed = g.type == GeomType::Sphere ? 1
                          : g.type == GeomType::Box  ? 3
                          : g.fromto                 ? 1
                                                     : 2;
    if (g.size.size() < needed) a.fail("size", "expected at least " + std::to_string(needed) + " numbers");
    g.pos = a.vec3("pos", {0, 0, 0});
    if (a.has("quat") && a.has("axisangle")) a.fail("axisangle", "give either quat or axisangle, not both");
    g.quat = quaternion(a);
    if (a.has("axisangle")) {
      auto v = a.numbers("axisangle", 4);
      if (v[0] == 0 && v[1] == 0 && v[2] == 0) a.fail("axisangle", "zero axis");
      g.axisangle = std::array<double, 4>{v[0], v[1], v[2], v[3]};
    }
    g.density = a.number("density", 1000.0);
    if (g.density <= 0) a.fail("density", "must be positive");
    if (a.has("mass")) {
      g.mass = a.number("mass", 0);
      if (*g.mass <= 0) a.fail("mass", "must be positive");
    }
    if (a.has("friction")) {
      auto f = a.numbers("friction");
      if (f.empty() || f.size() > 3) a.fail("friction", "expected 1 to 3 numbers");
      for (size_t i = 0; i < f.size(); ++i) g.friction[i] = f[i];
    }
    g.contype = a.integer("contype", 1);
    g.conaffinity = a.integer("conaffinity", 1);
    g.condim = a.integer("condim", 3);
    return g;
  }

  MjcfMotor parse_motor(const tinyxml2::XMLElement* e) {
    Attrs a = attrs(e);
    no_children(e);
    MjcfMotor m;
    m.name = a.str("name");
    m.joint = a.str("joint");
    m.line = a.line;
    if (m.joint.empty()) a.fail("joint", "every motor needs a joint");
    m.gear = a.number("gear", 1);
    m.ctrllimited = a.boolean("ctrllimited", false);
    if (a.has("ctrlrange")) {
      auto r = a.numbers("ctrlrange", 2);
      m.ctrl_lo = r[0];
      m.ctrl_hi = r[1];
    }
    return m;
  }

  const std::string& source_;
  MjcfModel& model_;
  std::map<std::string, std::map<std::string, std::string>> defaults_;
};

}  // namespace

MjcfModel parse_mjcf(const std::string& xml_text, const std::string& source) {
  tinyxml2::XMLDocument doc;
  if (doc.Parse(xml_text.c_str(), xml_text.size()) != tinyxml2::XML_SUCCESS)
    throw Error(source + ":" + std::to_string(doc.ErrorLineNum()) + ": malformed XML: " + doc.ErrorStr());
  if (!doc.RootElement()) throw Error(source + ": empty document");
  MjcfModel model;
  model.source = source;
  Parser(source, model).parse_root(doc.RootElement());
  if (model.bodies.empty()) throw Error(source + ": <worldbody> holds no body");
  return model;
}

MjcfModel load_mjcf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open robot file");
  std::stringstream text;
  text << in.rdbuf();
  return parse_mjcf(text.str(), path);
}

}  // namespace modiff::envs
