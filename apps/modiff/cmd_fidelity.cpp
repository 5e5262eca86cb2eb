// `modiff fidelity FILE.h5`: replay PyBullet reference episodes and report the divergence per step.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "modiff/datasets/golden.h"
#include "modiff/envs/fidelity.h"

namespace modiff::cli {
namespace {

double max_over_first(const std::vector<double>& v, size_t n) {
  double m = 0;
  for (size_t i = 0; i < std::min(n, v.size()); ++i) m = std::max(m, v[i]);
  return m;
}

}  // namespace

void add_fidelity_command(CLI::App& app) {
  auto file = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("fidelity", "Replay PyBullet reference episodes (golden HDF5) and measure divergence");
  cmd->add_option("file", *file, "Golden HDF5 file (format: shared/golden/README.md)")->required();
  cmd->add_flag("--json", *json, "Print JSON with per-step errors");
  cmd->callback([file, json] {
    auto ref = datasets::load_reference_file(*file);
    const auto& spec = datasets::env_for_robot(ref.robot, *file);
    nlohmann::json episodes = nlohmann::json::array();
    if (!*json)
      std::printf("%s (%s): %zu episodes\n%-16s %5s %5s %12s %12s %12s %12s\n", file->c_str(),
                  spec.id.c_str(), ref.episodes.size(), "episode", "ref", "ours", "obs err@10", "obs err@20",
                  "obs err all", "rew err@20");
    envs::LocomotionEnv env(spec);
    for (const auto* ep : envs::recording_order(ref.episodes)) {
      auto fid = envs::replay_reference(env, *ep);
      if (*json) {
        episodes.push_back({{"name", fid.name},
                            {"steps_reference", fid.steps_reference},
                            {"steps_replayed", fid.steps_replayed},
                            {"obs_max_abs_error", fid.obs_max_abs_error},
                            {"reward_abs_error", fid.reward_abs_error}});
        continue;
      }
      std::printf("%-16s %5d %5d %12.3g %12.3g %12.3g %12.3g\n", fid.name.c_str(), fid.steps_reference,
                  fid.steps_replayed, max_over_first(fid.obs_max_abs_error, 11),
                  max_over_first(fid.obs_max_abs_error, 21), max_over_first(fid.obs_max_abs_error, 1u << 30),
                  max_over_first(fid.reward_abs_error, 20));
    }
    if (*json) std::cout << nlohmann::json{{"robot", ref.robot}, {"env", spec.id}, {"episodes", episodes}}.dump() << "\n";
  });
}

}  // namespace modiff::cli
