#include "modiff/datasets/golden.h"

#include <cmath>
#include <sstream>

#include "modiff/common/error.h"
#include "modiff/datasets/hdf5_file.h"

namespace modiff::datasets {
namespace {

template <typename T>
std::vector<std::vector<T>> rows_of(const h5::Array<T>& a) {
  std::vector<std::vector<T>> rows(a.rows());
  const uint64_t c = a.cols();
  for (uint64_t r = 0; r < a.rows(); ++r) rows[r].assign(a.data.begin() + r * c, a.data.begin() + (r + 1) * c);
  return rows;
}

template <typename T>
void require_finite(const h5::Array<T>& a, const std::string& where) {
  for (size_t i = 0; i < a.data.size(); ++i)
    if (!std::isfinite(static_cast<double>(a.data[i])))
      throw Error(where + ": non-finite value at flat index " + std::to_string(i));
}

}  // namespace

const envs::EnvSpec& env_for_robot(const std::string& robot, const std::string& path) {
  if (robot == "hopper") return envs::find_env("bullet-hopper-v0");
  if (robot == "walker2d") return envs::find_env("bullet-walker2d-v0");
  if (robot == "halfcheetah") return envs::find_env("bullet-halfcheetah-v0");
  if (robot == "ant") return envs::find_env("bullet-ant-v0");
  throw Error(path + ": attribute 'robot' names unknown robot '" + robot +
              "' (expected hopper, walker2d, halfcheetah or ant)");
}

ReferenceFile load_reference_file(const std::string& path) {
  h5::File f = h5::File::open_read(path);
  ReferenceFile out;
  out.robot = f.attribute("/", "robot");
  out.source = f.has_attribute("/", "source") ? f.attribute("/", "source") : "";
  for (const std::string& name : f.children("/")) {
    const std::string g = "/" + name + "/";
    envs::ReferenceEpisode ep;
    ep.name = name;
    std::stringstream joints(f.attribute("/" + name, "joint_names"));
    for (std::string j; std::getline(joints, j, ',');) ep.joint_names.push_back(j);
    auto q0 = f.read_f64(g + "init_joint_positions");
    auto qd0 = f.read_f64(g + "init_joint_velocities");
    auto actions = f.read_f64(g + "actions");
    auto obs = f.read_f32(g + "observations");
    auto rewards = f.read_f64(g + "rewards");
    auto dones = f.read_u8(g + "dones");
    require_finite(q0, path + ": '" + g + "init_joint_positions'");
    require_finite(qd0, path + ": '" + g + "init_joint_velocities'");
    require_finite(actions, path + ": '" + g + "actions'");
    require_finite(obs, path + ": '" + g + "observations'");
    require_finite(rewards, path + ": '" + g + "rewards'");
    if (q0.data.size() != ep.joint_names.size() || qd0.data.size() != ep.joint_names.size())
      throw Error(path + ": '" + g + "init_joint_positions' length differs from joint_names");
    if (actions.shape.size() != 2 || obs.shape.size() != 2)
      throw Error(path + ": '" + g + "actions' and 'observations' must be 2-D");
    ep.initial.positions = q0.data;
    ep.initial.velocities = qd0.data;
    ep.actions = rows_of(actions);
    ep.observations = rows_of(obs);
    ep.rewards = rewards.data;
    ep.dones = dones.data;
    out.episodes.push_back(std::move(ep));
  }
  if (out.episodes.empty()) throw Error(path + ": holds no episode group");
  return out;
}

}  // namespace modiff::datasets
