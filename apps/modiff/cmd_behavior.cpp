// `modiff behavior train`: Soft Actor-Critic on the vector env, the behavior
// policies of the datasets; snapshots with their measured returns along the way.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "modiff/agents/sac.h"
#include "modiff/common/error.h"
#include "modiff/envs/env_spec.h"

namespace modiff::cli {

void add_behavior_command(CLI::App& app) {
  auto* behavior = app.add_subcommand("behavior", "Behavior policies (Soft Actor-Critic) for dataset generation");
  behavior->require_subcommand(1);
  struct Args {
    agents::SacRunOptions run;
    agents::SacConfig config;
    bool json = false;
    int threads = 0;
  };
  auto args = std::make_shared<Args>();
  auto* train = behavior->add_subcommand("train", "Train SAC online; checkpointed and resumable");
  train->add_option("--env", args->run.env_id, "Environment")->required();
  train->add_option("--steps", args->run.total_steps, "Env steps in total")->capture_default_str();
  train->add_option("--num-envs", args->run.num_envs, "Envs stepped together (one update per env step)")
      ->capture_default_str();
  train->add_option("--seed", args->run.seed, "Seed")->capture_default_str();
  train->add_option("--device", args->run.device, "auto, cpu or cuda")->capture_default_str();
  train->add_option("--out", args->run.out_dir, "Run directory")->capture_default_str();
  train->add_option("--snapshot-every", args->run.snapshot_every, "Steps between actor snapshots (with evaluation)")
      ->capture_default_str();
  train->add_option("--eval-episodes", args->run.eval_episodes, "Episodes per snapshot evaluation")
      ->capture_default_str();
  train->add_option("--learning-starts", args->config.learning_starts, "Random-action steps before learning")
      ->capture_default_str();
  train->add_option("--batch", args->config.batch_size, "Batch size")->capture_default_str();
  train->add_option("--threads", args->threads, "Env worker threads (0 = all cores)")->capture_default_str();
  train->add_flag("--resume", args->run.resume, "Continue the run in --out from its checkpoint");
  train->add_flag("--json", args->json, "Print the snapshots as JSON at the end (quiet meanwhile)");
  train->callback([args] {
    envs::find_env(args->run.env_id);  // unknown names fail before any work
    if (args->run.snapshot_every <= 0) throw Error("--snapshot-every must be positive");
    if (args->run.eval_episodes <= 0) throw Error("--eval-episodes must be positive");
    if (args->config.batch_size <= 0) throw Error("--batch must be positive");
    limit_threads(args->threads);
    args->run.quiet = args->json;
    const auto result = agents::train_sac(args->run, args->config);
    nlohmann::json snaps = nlohmann::json::array();
    for (const auto& s : result.snapshots)
      snaps.push_back({{"step", s.step}, {"file", s.file}, {"mean_return", s.mean_return},
                       {"normalized_return", s.normalized_return}});
    if (args->json) {
      std::cout << nlohmann::json{{"env", args->run.env_id}, {"out", args->run.out_dir},
                                  {"env_steps_per_s", result.env_steps_per_s}, {"snapshots", snaps}}
                       .dump(2)
                << "\n";
    } else {
      std::printf("done: %zu snapshots in %s/snapshots (%.0f env steps/s)\n", result.snapshots.size(),
                  args->run.out_dir.c_str(), result.env_steps_per_s);
    }
  });
}

}  // namespace modiff::cli
