// modiff: the one command-line entry point. Subcommands are registered from
// their own files; every error ends as one line on stderr and exit code 1
// (2 for a bad command line).
#include <cstdlib>
#include <iostream>

#include "commands.h"
#include "modiff/torch/device.h"
#include "modiff/common/environment.h"
#include "modiff/common/error.h"

namespace {

std::string first_line(const char* message) {
  std::string s(message ? message : "");
  const auto end = s.find('\n');
  return end == std::string::npos ? s : s.substr(0, end);
}

}  // namespace

int main(int argc, char** argv) {
  // CUDA gives a process 8 hardware work queues unless told otherwise; runs trained side by side use far more
  // streams, which then wait behind each other's work in shared queues (16 Diffusion-QL runs on an H200: 4,177
  // aggregate steps/s with 8, 5,655 with 32; docs/benchmarks.md). Read when CUDA starts; a user's own value stands.
  ::setenv("CUDA_DEVICE_MAX_CONNECTIONS", "32", /*overwrite=*/0);
  modiff::use_reproducible_cpu_arithmetic();  // before any tensor op
  CLI::App app{"modiff: modular diffusion-policy offline RL on the bullet-D4RL locomotion suite"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("modiff 0.1.0"));
  modiff::cli::add_envs_command(app);
  modiff::cli::add_rollout_command(app);
  modiff::cli::add_fidelity_command(app);
  modiff::cli::add_bench_command(app);
  modiff::cli::add_info_command(app);
  modiff::cli::add_robot_command(app);
  modiff::cli::add_data_command(app);
  modiff::cli::add_behavior_command(app);
  modiff::cli::add_train_command(app);
  modiff::cli::add_hyperparameters_command(app);
  modiff::cli::add_eval_command(app);
  modiff::cli::add_sweep_commands(app);
  if (argc > 1 && argv[1][0] != '-') {
    const std::string name = argv[1];
    std::string known;
    bool found = false;
    for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      found |= sub->get_name() == name;
      known += (known.empty() ? "" : ", ") + sub->get_name();
    }
    if (!found) {
      std::cerr << "modiff: error: unknown command '" << name << "' (commands: " << known << ")\n";
      return 2;
    }
  }
  try {
    modiff::check_environment();  // a bad MODIFF_* value is a bad invocation, before anything runs
  } catch (const modiff::Error& e) {
    std::cerr << "modiff: error: " << e.what() << "\n";
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    std::cerr << "modiff: error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const modiff::Error& e) {
    std::cerr << "modiff: error: " << first_line(e.what()) << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "modiff: error: out of memory (the machine could not give what this command asked for)\n";
    return 1;
  } catch (const std::exception& e) {
    // LibTorch's errors carry a C++ backtrace after their first line: the user gets that line only.
    std::cerr << "modiff: internal error: " << first_line(e.what()) << "\n";
    return 1;
  }
  return 0;
}
