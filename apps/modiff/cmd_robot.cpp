// `modiff robot FILE`: load an MJCF robot file the way the envs do and show the
// multibody it becomes (links, joints, limits, masses, inertias).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "modiff/envs/robot_description.h"

namespace modiff::cli {

void add_robot_command(CLI::App& app) {
  auto file = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("robot", "Check an MJCF robot file and show the multibody modiff builds from it");
  cmd->add_option("file", *file, "MJCF file (e.g. assets/robots/hopper.xml)")->required();
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([file, json] {
    const auto d = envs::describe_robot_file(*file);
    if (*json) {
      nlohmann::json links = nlohmann::json::array();
      for (const auto& l : d.links)
        links.push_back({{"name", l.name}, {"joint", l.joint}, {"joint_type", l.joint_type}, {"lower", l.lower},
                         {"upper", l.upper}, {"mass_kg", l.mass_kg},
                         {"inertia", {l.inertia[0], l.inertia[1], l.inertia[2]}}, {"parent", l.parent}});
      std::cout << nlohmann::json{{"file", d.source}, {"base", d.base}, {"fixed_base", d.fixed_base},
                                  {"base_mass_kg", d.base_mass_kg}, {"links", links},
                                  {"ignored_attributes", d.ignored_attributes}}
                       .dump(2)
                << "\n";
      return;
    }
    std::printf("%s: base '%s' (%s, %.4f kg), %zu links\n", d.source.c_str(), d.base.c_str(),
                d.fixed_base ? "fixed" : "floating", d.base_mass_kg, d.links.size());
    std::printf("%3s %-18s %-18s %-10s %10s %10s %9s %30s %6s\n", "#", "link", "joint", "type", "lower", "upper",
                "mass kg", "inertia kg m^2", "parent");
    for (size_t i = 0; i < d.links.size(); ++i) {
      const auto& l = d.links[i];
      std::printf("%3zu %-18s %-18s %-10s %10.4f %10.4f %9.4f %9.5f %9.5f %9.5f %6d\n", i, l.name.c_str(),
                  l.joint.c_str(), l.joint_type.c_str(), l.lower, l.upper, l.mass_kg, l.inertia[0], l.inertia[1],
                  l.inertia[2], l.parent);
    }
    if (!d.ignored_attributes.empty())
      std::printf("MuJoCo-only attributes PyBullet ignores (accepted, unused): %zu\n", d.ignored_attributes.size());
  });
}

}  // namespace modiff::cli
