#include "modiff/datasets/import.h"

#include <filesystem>

#include "modiff/common/error.h"
#include "modiff/common/file_lock.h"
#include "modiff/datasets/data_home.h"
#include "modiff/datasets/hdf5_file.h"

namespace modiff::datasets {

ImportFormat parse_import_format(const std::string& name) {
  if (name == "d4rl") return ImportFormat::D4rl;
  if (name == "d4rl-pybullet") return ImportFormat::D4rlPybullet;
  throw Error("unknown --format '" + name + "' (expected d4rl or d4rl-pybullet)");
}

Dataset read_d4rl_pybullet_file(const std::string& path, const envs::EnvSpec* env) {
  h5::File f = h5::File::open_read(path);
  auto where = [&](const std::string& key) { return path + ": '" + key + "'"; };
  for (const char* key : {"observations", "actions", "rewards", "terminals"})
    if (!f.exists(key)) throw Error(where(key) + ": missing (not a d4rl-pybullet dataset?)");
  const auto obs = f.read_f32("observations"), act = f.read_f32("actions"), rew = f.read_f32("rewards");
  const auto term = f.read_f32("terminals");  // stored as floats or booleans; read as numbers
  if (obs.shape.size() != 2 || act.shape.size() != 2)
    throw Error(path + ": 'observations' and 'actions' must be 2-dimensional");
  const size_t rows = obs.rows();
  if (act.rows() != rows || rew.data.size() != rows || term.data.size() != rows)
    throw Error(path + ": 'observations', 'actions', 'rewards' and 'terminals' must have the same number of rows");
  const int obs_dim = static_cast<int>(obs.cols()), act_dim = static_cast<int>(act.cols());
  if (!env) env = env_for_dims(obs_dim, act_dim);
  if (!env)
    throw Error(path + ": observation/action widths " + std::to_string(obs_dim) + "/" + std::to_string(act_dim) +
                " match no bullet env; name one with --env");
  for (size_t i = 0; i < rows; ++i)
    if (term.data[i] != 0.f && term.data[i] != 1.f)
      throw Error(where("terminals") + ": value " + std::to_string(term.data[i]) + " at index " + std::to_string(i) +
                  " is neither 0 nor 1");

  Dataset d;
  d.obs_dim = obs_dim;
  d.act_dim = act_dim;
  auto copy_row = [](std::vector<float>& dst, const std::vector<float>& src, size_t row, int width) {
    dst.insert(dst.end(), src.begin() + row * width, src.begin() + (row + 1) * width);
  };
  size_t start = 0;  // first row of the current episode
  for (size_t i = 0; i < rows; ++i) {
    const bool episode_end = term.data[i] == 1.f;
    if (!episode_end && i + 1 < rows) continue;
    // Rows start..i are one episode; i is its dummy final row when it ended.
    const size_t last = episode_end ? i : i;  // transitions t -> t+1 for t in [start, last)
    const size_t steps = last - start;
    for (size_t t = start; t < last; ++t) {
      copy_row(d.observations, obs.data, t, obs_dim);
      copy_row(d.actions, act.data, t, act_dim);
      copy_row(d.next_observations, obs.data, t + 1, obs_dim);
      d.rewards.push_back(rew.data[t + 1]);  // the reward that arrived at o_{t+1}
      const bool final = episode_end && t + 1 == last;
      const bool time_limit = final && static_cast<int>(steps) >= env->max_episode_steps;
      d.terminals.push_back(final && !time_limit);
      d.timeouts.push_back(time_limit);
    }
    start = i + 1;
  }
  d.attributes.env_id = env->id;
  d.attributes.generator = "import:d4rl-pybullet";
  d.attributes.level = "imported";
  validate_dataset(d, path, env);
  return d;
}

ImportResult import_dataset(const std::string& source, ImportFormat format, const std::string& name,
                            const envs::EnvSpec* env, bool overwrite) {
  check_dataset_name(name);
  const std::string target = dataset_path(name);
  const ExclusiveLock lock(target + ".lock", "dataset " + name);
  if (!overwrite && std::filesystem::exists(target))
    throw Error("dataset '" + name + "' already exists at " + target + " (use --force to replace it)");
  Dataset d;
  if (format == ImportFormat::D4rlPybullet) {
    d = read_d4rl_pybullet_file(source, env);
  } else {
    // D4RL's own files carry no env attribute: take it from --env or the widths.
    h5::File probe = h5::File::open_read(source);
    if (!env && !probe.has_attribute("/", "env_id") && probe.exists("observations") && probe.exists("actions")) {
      const auto o = probe.shape("observations"), a = probe.shape("actions");
      if (o.size() == 2 && a.size() == 2) env = env_for_dims(static_cast<int>(o[1]), static_cast<int>(a[1]));
    }
    d = read_d4rl_file(source, env);
    if (d.attributes.env_id.empty()) {
      if (!env) throw Error(source + ": cannot tell which env the data belong to; name one with --env");
      d.attributes.env_id = env->id;
    }
    if (d.attributes.generator.empty()) d.attributes.generator = "import:d4rl";
    if (d.attributes.level.empty()) d.attributes.level = "imported";
  }
  d.attributes.name = name;
  ImportResult r;
  r.name = name;
  r.path = target;
  r.transitions = d.size();
  r.sha256 = write_d4rl_file(target, d);
  return r;
}

}  // namespace modiff::datasets
