#include "modiff/datasets/d4rl_dataset.h"

#include <cmath>

#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/datasets/hdf5_file.h"
#include "modiff/datasets/sha256.h"

namespace modiff::datasets {
namespace {

std::string row_col(size_t flat, int width) {
  if (width <= 1) return "index " + std::to_string(flat);
  return "row " + std::to_string(flat / width) + ", column " + std::to_string(flat % width);
}

void require_finite(const std::vector<float>& v, int width, const std::string& where) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) throw Error(where + ": non-finite value (" + std::to_string(v[i]) + ") at " + row_col(i, width));
}

std::string attr_or(const h5::File& f, const std::string& name, const std::string& fallback) {
  return f.has_attribute("/", name) ? f.attribute("/", name) : fallback;
}

}  // namespace

void validate_dataset(const Dataset& d, const std::string& where, const envs::EnvSpec* env) {
  const size_t n = d.rewards.size();
  auto key = [&](const char* k) { return where + ": '" + std::string(k) + "'"; };
  if (n == 0) throw Error(where + ": holds no transitions");
  if (d.obs_dim <= 0 || d.act_dim <= 0) throw Error(where + ": observation and action widths must be positive");
  if (d.observations.size() != n * d.obs_dim)
    throw Error(key("observations") + ": expected " + std::to_string(n) + " rows of " + std::to_string(d.obs_dim));
  if (d.actions.size() != n * d.act_dim)
    throw Error(key("actions") + ": expected " + std::to_string(n) + " rows of " + std::to_string(d.act_dim));
  if (d.terminals.size() != n) throw Error(key("terminals") + ": expected " + std::to_string(n) + " values");
  if (d.timeouts.size() != n) throw Error(key("timeouts") + ": expected " + std::to_string(n) + " values");
  if (!d.next_observations.empty() && d.next_observations.size() != n * d.obs_dim)
    throw Error(key("next_observations") + ": expected " + std::to_string(n) + " rows of " + std::to_string(d.obs_dim));
  if (env) {
    if (d.obs_dim != env->obs_dim)
      throw Error(key("observations") + ": width " + std::to_string(d.obs_dim) + " does not match " + env->id +
                  " (" + std::to_string(env->obs_dim) + ")");
    if (d.act_dim != env->act_dim)
      throw Error(key("actions") + ": width " + std::to_string(d.act_dim) + " does not match " + env->id + " (" +
                  std::to_string(env->act_dim) + ")");
  }
  require_finite(d.observations, d.obs_dim, key("observations"));
  require_finite(d.actions, d.act_dim, key("actions"));
  require_finite(d.rewards, 1, key("rewards"));
  require_finite(d.next_observations, d.obs_dim, key("next_observations"));
  // Inside an episode the next observation is the following row's observation.
  if (!d.next_observations.empty())
    for (size_t i = 0; i + 1 < n; ++i) {
      if (d.terminals[i] || d.timeouts[i]) continue;
      for (int k = 0; k < d.obs_dim; ++k)
        if (d.next_observations[i * d.obs_dim + k] != d.observations[(i + 1) * d.obs_dim + k])
          throw Error(key("next_observations") + ": row " + std::to_string(i) +
                      " ends no episode but differs from observations row " + std::to_string(i + 1) +
                      " (episode boundary missing a terminal or timeout?)");
    }
}

std::string write_d4rl_file(const std::string& path, const Dataset& d) {
  validate_dataset(d, path, nullptr);
  write_atomically(path, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp);
    const uint64_t n = d.size();
    f.write_f32("observations", d.observations.data(), {n, static_cast<uint64_t>(d.obs_dim)});
    f.write_f32("actions", d.actions.data(), {n, static_cast<uint64_t>(d.act_dim)});
    f.write_f32("rewards", d.rewards.data(), {n});
    f.write_bool("terminals", d.terminals.data(), n);
    f.write_bool("timeouts", d.timeouts.data(), n);
    if (!d.next_observations.empty())
      f.write_f32("next_observations", d.next_observations.data(), {n, static_cast<uint64_t>(d.obs_dim)});
    const auto& a = d.attributes;
    f.set_attribute("/", "env_id", a.env_id);
    f.set_attribute("/", "dataset_name", a.name);
    f.set_attribute("/", "level", a.level);
    f.set_attribute("/", "generator", a.generator);
    f.set_attribute("/", "seed", a.seed);
    f.set_attribute("/", "behavior_policy", a.behavior_policy);
    f.set_attribute("/", "behavior_return", a.behavior_return);
    f.close();
  });
  return sha256_file(path);
}

Dataset read_d4rl_file(const std::string& path, const envs::EnvSpec* expected_env) {
  h5::File f = h5::File::open_read(path);
  auto where = [&](const std::string& key) { return path + ": '" + key + "'"; };
  for (const char* key : {"observations", "actions", "rewards", "terminals", "timeouts"})
    if (!f.exists(key)) throw Error(where(key) + ": missing (not a D4RL-layout dataset?)");
  for (const char* key : {"observations", "actions", "rewards"})
    if (f.type_class(key) != "float") throw Error(where(key) + ": expected floating-point values, found " + f.type_class(key));
  for (const char* key : {"terminals", "timeouts"}) {
    const std::string cls = f.type_class(key);
    if (cls != "bool" && cls != "integer") throw Error(where(key) + ": expected booleans, found " + cls);
  }
  const auto obs_shape = f.shape("observations"), act_shape = f.shape("actions"), rew_shape = f.shape("rewards");
  if (obs_shape.size() != 2) throw Error(where("observations") + ": expected 2 dimensions [N, obs]");
  if (act_shape.size() != 2) throw Error(where("actions") + ": expected 2 dimensions [N, act]");
  if (!(rew_shape.size() == 1 || (rew_shape.size() == 2 && rew_shape[1] == 1)))
    throw Error(where("rewards") + ": expected shape [N]");
  const uint64_t n = obs_shape[0];
  auto check_rows = [&](const std::string& key, uint64_t rows) {
    if (rows != n)
      throw Error(where(key) + ": has " + std::to_string(rows) + " rows, observations has " + std::to_string(n));
  };
  check_rows("actions", act_shape[0]);
  check_rows("rewards", rew_shape[0]);
  for (const char* key : {"terminals", "timeouts"}) {
    const auto s = f.shape(key);
    if (s.size() != 1) throw Error(where(key) + ": expected shape [N]");
    check_rows(key, s[0]);
  }

  Dataset d;
  d.obs_dim = static_cast<int>(obs_shape[1]);
  d.act_dim = static_cast<int>(act_shape[1]);
  d.observations = f.read_f32("observations").data;
  d.actions = f.read_f32("actions").data;
  d.rewards = f.read_f32("rewards").data;
  d.terminals = f.read_u8("terminals").data;
  d.timeouts = f.read_u8("timeouts").data;
  if (f.exists("next_observations")) {
    if (f.shape("next_observations") != obs_shape) throw Error(where("next_observations") + ": shape differs from observations");
    d.next_observations = f.read_f32("next_observations").data;
  }
  auto& a = d.attributes;
  a.env_id = attr_or(f, "env_id", "");
  a.name = attr_or(f, "dataset_name", "");
  a.level = attr_or(f, "level", "");
  a.generator = attr_or(f, "generator", "");
  a.behavior_policy = attr_or(f, "behavior_policy", "");
  try {
    a.seed = std::stoll(attr_or(f, "seed", "0"));
    a.behavior_return = std::stod(attr_or(f, "behavior_return", "0"));
  } catch (const std::exception&) {
    throw Error(path + ": attributes 'seed' and 'behavior_return' must be numbers");
  }
  const envs::EnvSpec* env = expected_env;
  if (!env && !a.env_id.empty()) env = &envs::find_env(a.env_id);
  if (expected_env && !a.env_id.empty() && envs::find_env(a.env_id).id != expected_env->id)
    throw Error(path + ": attribute 'env_id' is " + a.env_id + ", expected " + expected_env->id);
  validate_dataset(d, path, env);
  return d;
}

EpisodeSummary summarize_episodes(const Dataset& d) {
  EpisodeSummary s;
  double ret = 0;
  int len = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    ret += d.rewards[i];
    ++len;
    if (d.terminals[i] || d.timeouts[i]) {
      s.returns.push_back(ret);
      s.lengths.push_back(len);
      ret = 0;
      len = 0;
    }
  }
  s.unfinished_rows = len;
  return s;
}

}  // namespace modiff::datasets
