#include "modiff/behavior/behavior_suite.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "modiff/behavior/gaussian_policy.h"
#include "modiff/common/environment.h"
#include "modiff/common/error.h"
#include "modiff/common/file_lock.h"
#include "modiff/common/paths.h"
#include "modiff/common/rng.h"
#include "modiff/common/summary.h"
#include "modiff/datasets/generate.h"

namespace modiff::behavior {

namespace fs = std::filesystem;
namespace {

nlohmann::json load_manifest(const envs::EnvSpec& env) {
  const std::string path = behavior_dir(env) + "/manifest.json";
  std::ifstream in(path);
  if (!in)
    throw Error("no behavior policies for " + env.id + ": " + path +
                " is missing (train them with `modiff behavior train`, export with `modiff behavior export`)");
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw Error(path + ": not valid JSON (" + e.what() + ")");
  }
}

std::string manifest_file(const envs::EnvSpec& env, const nlohmann::json& manifest, const std::string& level) {
  if (!manifest.contains(level) || !manifest[level].contains("file"))
    throw Error(behavior_dir(env) + "/manifest.json: no '" + level + "' policy");
  return path_under(behavior_dir(env), manifest[level]["file"].get<std::string>(), behavior_dir(env) + "/manifest.json");
}

// Appends `tail` to `head` (both of one env).
void append(datasets::Dataset& head, const datasets::Dataset& tail) {
  auto cat = [](auto& a, const auto& b) { a.insert(a.end(), b.begin(), b.end()); };
  cat(head.observations, tail.observations);
  cat(head.actions, tail.actions);
  cat(head.rewards, tail.rewards);
  cat(head.terminals, tail.terminals);
  cat(head.timeouts, tail.timeouts);
  cat(head.next_observations, tail.next_observations);
}

double mean_episode_return(const datasets::Dataset& d) {
  return summarize(datasets::summarize_episodes(d).returns).mean;
}

datasets::Dataset roll(const envs::EnvSpec& env, const datasets::BatchPolicy& policy, long transitions, uint64_t seed,
                       int num_envs) {
  datasets::GenerateOptions g;
  g.transitions = transitions;
  g.seed = seed;
  g.num_envs = num_envs;
  return datasets::generate_dataset(env, policy, g);
}

}  // namespace

std::string assets_dir() {
  return assets_override().value_or(MODIFF_ASSETS_DIR);
}

std::string behavior_dir(const envs::EnvSpec& env) { return assets_dir() + "/behavior/" + env.id; }

datasets::Dataset build_policy_dataset(const envs::EnvSpec& env, const std::string& policy_file,
                                       const SuiteBuildOptions& opt) {
  GaussianPolicy policy =
      policy_file.empty() ? GaussianPolicy::random_init(env.id, 256, opt.seed) : GaussianPolicy::load(policy_file);
  if (policy.info().env_id != env.id) throw Error(policy_file + ": a policy for " + policy.info().env_id + ", not " + env.id);
  auto d = roll(
      env, [&](const float* o, int n, const uint64_t* keys, double* a) { policy.sample_keyed(o, n, keys, a); },
      opt.transitions, opt.seed, opt.num_envs);
  d.attributes.behavior_policy = policy_file.empty()
                                     ? "randomly initialized SAC actor (seed " + std::to_string(opt.seed) + ")"
                                     : "SAC actor " + std::filesystem::path(policy_file).filename().string();
  d.attributes.behavior_return = mean_episode_return(d);
  return d;
}

datasets::Dataset build_suite_dataset(const datasets::SuiteEntry& entry, const SuiteBuildOptions& opt) {
  const envs::EnvSpec& env = *entry.env;
  datasets::Dataset d;
  if (entry.level == "random") {
    d = build_policy_dataset(env, "", opt);
  } else if (entry.level == "medium" || entry.level == "expert") {
    const auto manifest = load_manifest(env);
    d = build_policy_dataset(env, manifest_file(env, manifest, entry.level), opt);
  } else if (entry.level == "medium-expert") {
    const auto manifest = load_manifest(env);
    d = build_policy_dataset(env, manifest_file(env, manifest, "medium"), opt);
    SuiteBuildOptions second = opt;
    second.seed = opt.seed + 1000003;
    append(d, build_policy_dataset(env, manifest_file(env, manifest, "expert"), second));
    d.attributes.behavior_policy = "medium then expert SAC actors";
    d.attributes.behavior_return = mean_episode_return(d);
  } else if (entry.level == "medium-replay") {
    const auto manifest = load_manifest(env);
    if (!manifest.contains("replay")) throw Error(behavior_dir(env) + "/manifest.json: no 'replay' section");
    const auto& replay = manifest["replay"];
    const long until = replay.at("until_step").get<long>();
    const long learning_starts = std::min(replay.at("learning_starts").get<long>(), until);
    const int hidden = replay.at("hidden").get<int>();
    const uint64_t train_seed = replay.at("seed").get<uint64_t>();
    // Segment boundaries: [0, learning_starts) uniform random, then each
    // interval with the actor that started it.
    const auto uniform_actions = [&](const float*, int n, const uint64_t* keys, double* a) {
      for (int r = 0; r < n; ++r) {
        Rng uniform(keys[r]);
        for (int k = 0; k < env.act_dim; ++k) a[r * env.act_dim + k] = uniform.uniform(-1, 1);
      }
    };
    d = roll(env, uniform_actions, learning_starts, opt.seed, opt.num_envs);
    long start = learning_starts;
    std::vector<std::pair<long, std::string>> actors = {{learning_starts, ""}};  // "" = the initial actor
    for (const auto& s : replay.at("snapshots")) actors.push_back({s.at("step").get<long>(), s.at("file").get<std::string>()});
    for (size_t k = 0; k < actors.size() && start < until; ++k) {
      const long end = k + 1 < actors.size() ? std::min(actors[k + 1].first, until) : until;
      if (end <= start) continue;
      GaussianPolicy policy = actors[k].second.empty()
                                  ? GaussianPolicy::random_init(env.id, hidden, train_seed)
                                  : GaussianPolicy::load(path_under(behavior_dir(env), actors[k].second,
                                                                    behavior_dir(env) + "/manifest.json"));
      append(d, roll(
                    env,
                    [&](const float* o, int n, const uint64_t* keys, double* a) { policy.sample_keyed(o, n, keys, a); },
                    end - start, opt.seed + 1000 * (k + 1), opt.num_envs));
      start = end;
    }
    d.attributes.behavior_policy = "SAC training replay up to the medium policy (" + std::to_string(until) + " steps)";
    d.attributes.behavior_return = mean_episode_return(d);
  } else {
    throw Error("unknown dataset level '" + entry.level + "'");
  }
  d.attributes.env_id = env.id;
  d.attributes.name = entry.name;
  d.attributes.level = entry.level;
  d.attributes.generator = "modiff 0.1.0";
  d.attributes.seed = static_cast<long long>(opt.seed);
  return d;
}

std::string resolve_dataset(const std::string& arg, bool quiet) {
  if (fs::is_regular_file(arg)) return arg;
  const auto ext = fs::path(arg).extension();
  if (arg.find('/') != std::string::npos || ext == ".hdf5" || ext == ".h5")
    throw Error(arg + ": no such dataset file");
  datasets::check_dataset_name(arg);
  const std::string path = datasets::dataset_path(arg);
  if (fs::exists(path)) return path;
  for (const auto& entry : datasets::suite()) {
    if (entry.name != arg) continue;
    // Two processes needing the same dataset (sweep shards, MPI ranks): the second waits for the first's build.
    const ExclusiveLock lock(path + ".lock", "dataset " + arg, LockWait::Wait);
    if (fs::exists(path)) return path;
    if (!quiet) std::fprintf(stderr, "building %s on first use -> %s\n", arg.c_str(), path.c_str());
    datasets::write_d4rl_file(path, build_suite_dataset(entry, SuiteBuildOptions{}));
    return path;
  }
  throw Error("dataset '" + arg + "' is neither a file nor in the data home (" + path + "); see `modiff data list`");
}

}  // namespace modiff::behavior
