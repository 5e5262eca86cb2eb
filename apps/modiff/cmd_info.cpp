// `modiff info`: what this build runs on (LibTorch, CUDA, threads, Bullet precision) and the MODIFF_*
// variables it reads.
#include <tbb/info.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "modiff/torch/device.h"
#include "modiff/common/environment.h"

namespace modiff::cli {

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show the build: LibTorch, CUDA, threads, physics precision");
  auto device = std::make_shared<std::string>("auto");
  cmd->add_option("--device", *device, "auto, cpu or cuda")->capture_default_str()->check(one_of(kDevices));
  cmd->callback([device] {
    auto choice = modiff::resolve_device(*device);
    std::cout << "modiff 0.1.0\n"
              << "physics: Bullet 3.24, double precision (BT_USE_DOUBLE_PRECISION)\n"
              << "cores: " << tbb::info::default_concurrency() << "\n"
              << modiff::torch_build_summary() << "\n"
              << "device: " << choice.description << "\n"
              << "environment:\n";
    for (const auto& v : environment_variables()) {
      const auto value = environment_value(v);
      std::cout << "  " << v.name << (value ? " = " + *value : std::string(" (not set)")) << ": " << v.meaning
                << "\n";
    }
  });
}

}  // namespace modiff::cli
