// `modiff data import|info|list`: datasets in D4RL's HDF5 layout in the data home.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "modiff/common/error.h"
#include "modiff/common/summary.h"
#include "modiff/datasets/d4rl_dataset.h"
#include "modiff/datasets/data_home.h"
#include "modiff/datasets/import.h"
#include "modiff/datasets/sha256.h"

namespace modiff::cli {
namespace {

nlohmann::json summary_json(const Summary& s) {
  return {{"mean", s.mean}, {"std", s.std}, {"min", s.min}, {"max", s.max}};
}

// A dataset argument is a file path when it names an existing file, else a name in the data home.
std::string resolve_dataset(const std::string& arg) {
  if (std::filesystem::is_regular_file(arg)) return arg;
  datasets::check_dataset_name(arg);
  const std::string path = datasets::dataset_path(arg);
  if (!std::filesystem::exists(path))
    throw Error("dataset '" + arg + "' is neither a file nor in the data home (" + path + "); see `modiff data list`");
  return path;
}

void add_import(CLI::App& data) {
  struct Args {
    std::string file, format = "d4rl", name, env;
    bool force = false, json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = data.add_subcommand("import", "Bring a D4RL or d4rl-pybullet HDF5 file into the data home");
  cmd->add_option("file", args->file, "HDF5 file to import")->required();
  cmd->add_option("--format", args->format, "d4rl or d4rl-pybullet")->capture_default_str();
  cmd->add_option("--as", args->name, "Dataset name in the data home")->required();
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
    const std::string path = resolve_dataset(*target);
    const auto d = datasets::read_d4rl_file(path);
    const auto episodes = datasets::summarize_episodes(d);
    const envs::EnvSpec* env = d.attributes.env_id.empty() ? datasets::env_for_dims(d.obs_dim, d.act_dim)
                                                           : &envs::find_env(d.attributes.env_id);
    std::vector<double> normalized;
    for (double r : episodes.returns) normalized.push_back(env ? envs::normalized_score(*env, r) : 0.0);
    const Summary ret = summarize(episodes.returns), norm = summarize(normalized);
    const std::string name = d.attributes.name.empty() ? std::filesystem::path(path).stem().string() : d.attributes.name;
    const std::string sha = datasets::sha256_file(path);
    if (*json) {
      std::cout << nlohmann::json{{"name", name},
                                  {"file", path},
                                  {"sha256", sha},
                                  {"env", env ? env->id : ""},
                                  {"transitions", d.size()},
                                  {"episodes", episodes.returns.size()},
                                  {"return", summary_json(ret)},
                                  {"normalized_return", summary_json(norm)}}
                       .dump(2)
                << "\n";
      return;
    }
    std::printf("%s (%s)\n  file %s\n  sha256 %s\n  %zu transitions, %zu complete episodes (%ld rows after the last)\n",
                name.c_str(), env ? env->id.c_str() : "unknown env", path.c_str(), sha.c_str(), d.size(),
                episodes.returns.size(), episodes.unfinished_rows);
    std::printf("  return             mean %10.3f  std %9.3f  min %10.3f  max %10.3f\n", ret.mean, ret.std, ret.min, ret.max);
    std::printf("  normalized return  mean %10.3f  std %9.3f  min %10.3f  max %10.3f\n", norm.mean, norm.std, norm.min,
                norm.max);
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

}  // namespace

void add_data_command(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Datasets in D4RL's HDF5 layout (import, info, list)");
  data->require_subcommand(1);
  add_import(*data);
  add_info(*data);
  add_list(*data);
}

}  // namespace modiff::cli
