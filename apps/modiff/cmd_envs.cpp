// `modiff envs`: the registered environments and their dimensions.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "modiff/envs/env_spec.h"

namespace modiff::cli {

void add_envs_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("envs", "List the locomotion environments with observation/action sizes");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([json] {
    if (*json) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& s : envs::all_envs())
        out.push_back({{"id", s.id},
                       {"alias", s.pybullet_alias},
                       {"obs_dim", s.obs_dim},
                       {"act_dim", s.act_dim},
                       {"max_episode_steps", s.max_episode_steps},
                       {"ref_min_return", s.ref_min_return},
                       {"ref_max_return", s.ref_max_return}});
      std::cout << nlohmann::json{{"envs", out}}.dump(2) << "\n";
      return;
    }
    std::printf("%-24s %-26s %4s %4s %6s\n", "env", "pybullet name", "obs", "act", "steps");
    for (const auto& s : envs::all_envs())
      std::printf("%-24s %-26s %4d %4d %6d\n", s.id.c_str(), s.pybullet_alias.c_str(), s.obs_dim, s.act_dim,
                  s.max_episode_steps);
  });
}

}  // namespace modiff::cli
