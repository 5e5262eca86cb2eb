// `modiff data build|import|info|list` (`data suite`: suite_fingerprints.cpp): datasets in D4RL's HDF5 layout in the data home.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "json_output.h"
#include "modiff/common/error.h"
#include "modiff/common/file_lock.h"
#include "modiff/common/summary.h"
#include "modiff/behavior/behavior_suite.h"
#include "modiff/agents/train.h"
#include "modiff/datasets/d4rl_dataset.h"
#include "modiff/datasets/data_home.h"
#include "modiff/datasets/import.h"
#include "modiff/datasets/sha256.h"
#include "suite_fingerprints.h"

namespace modiff::cli {
namespace {


void add_import(CLI::App& data) {
  struct Args {
    std::string file, format = "d4rl", name, env;
    bool force = false, json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = data.add_subcommand("import", "Bring a D4RL or d4rl-pybullet HDF5 file into the data home");
  cmd->add_option("file", args->file, "HDF5 file to import")->required();
  cmd->add_option("--format", args->format, "d4rl or d4rl-pybullet")->capture_default_str()->check(one_of({"d4rl", "d4rl-pybullet"}));
  cmd->add_option("--as", args->name, "Dataset name in the data home")->required()->check(dataset_name());
  cmd->add_option("--env", args->env, "Env of the data (default: from the file, or from its widths)");
  cmd->add_flag("--force", args->force, "Replace an existing dataset of that name");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args] {
    const auto format = datasets::parse_import_format(args->format);
    const envs::EnvSpec* env = args->env.empty() ? nullptr : &envs::find_env(args->env);
    const auto r = datasets::import_dataset(args->file, format, args->name, env, args->force);
    if (args->json) {
      std::cout << nlohmann::json{{"name", r.name}, {"file", r.path}, {"sha256", r.sha256}, {"transitions", r.transitions}}
                       .dump(2)
                << "\n";
    } else {
      std::printf("imported %s: %zu transitions -> %s (sha256 %s)\n", r.name.c_str(), r.transitions, r.path.c_str(),
                  r.sha256.c_str());
    }
  });
}

void add_info(CLI::App& data) {
  auto target = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* cmd = data.add_subcommand("info", "Size, episodes and (normalized) returns of a dataset");
  cmd->add_option("dataset", *target, "Dataset name or HDF5 file")->required();
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([target, json] {
    const std::string path = behavior::resolve_dataset(*target, *json);
    const DatasetFacts f = dataset_facts(path);
    const FingerprintVerdict verdict = check_suite_fingerprint(f, read_suite_fingerprints());
    if (*json) {
      std::cout << nlohmann::json{{"name", f.name},
                                  {"file", path},
                                  {"sha256", f.sha256},
                                  {"env", f.env_id},
                                  {"seed", f.seed},
                                  {"transitions", f.transitions},
                                  {"episodes", f.episodes},
                                  {"return", summary_json(f.returns)},
                                  {"normalized_return", summary_json(f.normalized)},
                                  {"suite_fingerprint", {{"compared", verdict.compared},
                                                         {"matches", verdict.matches},
                                                         {"verdict", verdict.text}}}}
                       .dump(2)
                << "\n";
      return;
    }
    std::printf("%s (%s)\n  file %s\n  sha256 %s\n  suite fingerprint: %s\n"
                "  %zu transitions, %zu complete episodes (%ld rows after the last)\n",
                f.name.c_str(), f.env_id.empty() ? "unknown env" : f.env_id.c_str(), path.c_str(), f.sha256.c_str(),
                verdict.text.c_str(), f.transitions, f.episodes, f.unfinished_rows);
    std::printf("  return             mean %10.3f  std %9.3f  min %10.3f  max %10.3f\n", f.returns.mean, f.returns.std,
                f.returns.min, f.returns.max);
    std::printf("  normalized return  mean %10.3f  std %9.3f  min %10.3f  max %10.3f\n", f.normalized.mean,
                f.normalized.std, f.normalized.min, f.normalized.max);
  });
}

void add_list(CLI::App& data) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = data.add_subcommand("list", "The bullet-D4RL suite and what the data home holds");
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([json] {
    namespace fs = std::filesystem;
    nlohmann::json out = nlohmann::json::array();
    std::vector<std::string> listed;
    for (const auto& e : datasets::suite()) {
      const bool built = fs::exists(datasets::dataset_path(e.name));
      out.push_back({{"name", e.name}, {"env", e.env->id}, {"level", e.level}, {"built", built}});
      listed.push_back(e.name);
    }
    for (const auto& name : datasets::datasets_in_home())
      if (std::find(listed.begin(), listed.end(), name) == listed.end())
        out.push_back({{"name", name}, {"env", ""}, {"level", "other"}, {"built", true}});
    if (*json) {
      std::cout << nlohmann::json{{"data_home", datasets::data_home()}, {"datasets", out}}.dump(2) << "\n";
      return;
    }
    std::printf("data home: %s\n%-36s %-24s %-14s %s\n", datasets::data_home().c_str(), "dataset", "env", "level", "built");
    for (const auto& e : out)
      std::printf("%-36s %-24s %-14s %s\n", e["name"].get<std::string>().c_str(), e["env"].get<std::string>().c_str(),
                  e["level"].get<std::string>().c_str(), e["built"].get<bool>() ? "yes" : "no");
  });
}

void add_build(CLI::App& data) {
  struct Args {
    std::string name, out, policy, env;
    long transitions = 1000000;
    uint64_t seed = 0;
    int num_envs = 64, threads = 0;
    bool force = false, json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = data.add_subcommand("build", "Generate a dataset by rolling out a behavior policy on the vector env");
  cmd->add_option("name", args->name, "Suite name (bullet-hopper-random-v0, ...) or a new name with --env and --policy")
      ->required();
  cmd->add_option("--transitions", args->transitions, "Rows to generate")->capture_default_str()->check(integer_in(1, 100000000));
  cmd->add_option("--seed", args->seed, "Seed (fixes every episode: episode k is seeded from the seed and k)")->capture_default_str()->check(seed_value());
  cmd->add_option("--out", args->out, "Output file (default: the data home)");
  cmd->add_option("--policy", args->policy, "Actor file from `modiff behavior train` instead of the suite's policy");
  cmd->add_option("--env", args->env, "Env, for a name outside the suite");
  cmd->add_option("--num-envs", args->num_envs, "Episodes run side by side (speed only: the dataset does not depend on it)")->capture_default_str()->check(integer_in(1, 4096));
  cmd->add_option("--threads", args->threads, "Worker threads (0 = all cores); results do not depend on it")->check(thread_count());
  cmd->add_flag("--force", args->force, "Replace an existing dataset");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args] {
    datasets::check_dataset_name(args->name);
    const datasets::SuiteEntry* entry = nullptr;
    for (const auto& e : datasets::suite())
      if (e.name == args->name) entry = &e;
    const envs::EnvSpec* env = entry ? entry->env : nullptr;
    if (!args->env.empty()) {
      const auto& named = envs::find_env(args->env);
      if (env && env->id != named.id) throw Error(args->name + " is a " + env->id + " dataset, not " + named.id);
      env = &named;
    }
    if (!env) throw Error("'" + args->name + "' is not a bullet-D4RL suite name: give --env and --policy");
    if (!entry && args->policy.empty()) throw Error("'" + args->name + "' is not a bullet-D4RL suite name: give --policy");
    const std::string level = entry && args->policy.empty() ? entry->level : "custom";
    const std::string target = args->out.empty() ? datasets::dataset_path(args->name) : args->out;
    const ExclusiveLock lock(target + ".lock", "dataset " + target);
    if (!args->force && std::filesystem::exists(target))
      throw Error(target + " already exists (use --force to rebuild it)");
    limit_threads(args->threads);

    behavior::SuiteBuildOptions opt;
    opt.transitions = args->transitions;
    opt.seed = args->seed;
    opt.num_envs = args->num_envs;
    datasets::Dataset dataset = (entry && args->policy.empty())
                                    ? behavior::build_suite_dataset(*entry, opt)
                                    : behavior::build_policy_dataset(*env, args->policy, opt);
    const auto episodes = datasets::summarize_episodes(dataset);
    const Summary ret = summarize(episodes.returns);
    dataset.attributes.name = args->name;
    dataset.attributes.level = level;
    dataset.attributes.generator = "modiff 0.1.0";
    dataset.attributes.seed = static_cast<long long>(args->seed);
    const std::string sha = datasets::write_d4rl_file(target, dataset);
    if (args->json) {
      std::cout << nlohmann::json{{"name", args->name}, {"file", target}, {"sha256", sha},
                                  {"transitions", dataset.size()}, {"episodes", episodes.returns.size()},
                                  {"return", summary_json(ret)},
                                  {"normalized_return_mean", envs::normalized_score(*env, ret.mean)}}
                       .dump(2)
                << "\n";
    } else {
      std::printf("built %s: %zu transitions, %zu episodes, mean return %.2f (normalized %.2f) -> %s\n",
                  args->name.c_str(), dataset.size(), episodes.returns.size(), ret.mean,
                  envs::normalized_score(*env, ret.mean), target.c_str());
    }
  });
}

}  // namespace

void add_data_command(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Datasets in D4RL's HDF5 layout (build, import, info, list, suite)");
  data->require_subcommand(1);
  add_import(*data);
  add_info(*data);
  add_list(*data);
  add_build(*data);
  add_suite_subcommand(*data);
}

}  // namespace modiff::cli
