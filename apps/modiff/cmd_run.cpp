// `modiff run`: the default job of `make run`. Until training lands (issues 4-6)
// it checks the environments: a random-policy rollout on each of the four tasks,
// with the mean return next to D4RL's REF_MIN (the random-policy reference).
#include <cstdio>

#include "commands.h"
#include "modiff/common/summary.h"
#include "modiff/envs/rollout.h"

namespace modiff::cli {

void add_run_command(CLI::App& app) {
  auto episodes = std::make_shared<int>(20);
  auto* cmd = app.add_subcommand("run", "Default job: random-policy rollouts on every env against D4RL's references");
  cmd->add_option("--episodes", *episodes, "Episodes per env")->capture_default_str();
  cmd->callback([episodes] {
    std::printf("%-24s %10s %12s %10s %10s\n", "env", "episodes", "mean return", "REF_MIN", "mean len");
    for (const auto& spec : envs::all_envs()) {
      envs::RolloutOptions opt;
      opt.episodes = *episodes;
      auto outcomes = envs::run_rollouts(spec, opt);
      std::vector<double> returns, lengths;
      for (const auto& o : outcomes) {
        returns.push_back(o.episode_return);
        lengths.push_back(o.length);
      }
      std::printf("%-24s %10d %12.2f %10.2f %10.1f\n", spec.id.c_str(), *episodes, summarize(returns).mean,
                  spec.ref_min_return, summarize(lengths).mean);
    }
  });
}

}  // namespace modiff::cli
