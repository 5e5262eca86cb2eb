// `modiff behavior train`: Soft Actor-Critic on the vector env, the behavior
// policies of the datasets; snapshots with their measured returns along the way.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "modiff/behavior/behavior_suite.h"
#include "modiff/behavior/sac.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/file_lock.h"
#include "modiff/common/paths.h"
#include "modiff/common/error.h"
#include "modiff/envs/env_spec.h"

namespace modiff::cli {

namespace {

// `modiff behavior export RUN`: picks the expert (the snapshot closest to
// D4RL's expert level, normalized score 100) and
// the medium policy (the earlier snapshot closest to a third of the expert's
// return, as D4RL defined medium) from a training run and copies them, with
// the snapshots before the medium one (for medium-replay), into
// assets/behavior/<env>/ with a manifest.
void add_export(CLI::App& behavior) {
  struct Args {
    std::string run, to;
    long expert_step = -1, medium_step = -1;
    bool force = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = behavior.add_subcommand("export", "Copy a run's expert, medium and replay snapshots into assets/behavior/");
  cmd->add_option("run", args->run, "Run directory of `modiff behavior train`")->required();
  cmd->add_option("--to", args->to, "Destination (default: assets/behavior/<env>)");
  cmd->add_option("--expert-step", args->expert_step, "Snapshot step for the expert (default: normalized return closest to 100)")->check(integer_in(0, 1000000000));
  cmd->add_option("--medium-step", args->medium_step, "Snapshot step for medium (default: closest to expert/3)")->check(integer_in(0, 1000000000));
  cmd->add_flag("--force", args->force, "Replace the behavior policies already in the destination");
  cmd->callback([args] {
    namespace fs = std::filesystem;
    const fs::path run(args->run);
    nlohmann::json state, snaps;
    {
      std::ifstream s(run / "checkpoint" / "state.json"), j(run / "snapshots.json");
      if (!s || !j) throw Error(args->run + ": not a `modiff behavior train` run (no checkpoint/state.json or snapshots.json)");
      try {
        s >> state;
        j >> snaps;
      } catch (const std::exception& e) {
        throw Error(args->run + ": unreadable run files (" + e.what() + ")");
      }
    }
    if (snaps.empty()) throw Error(args->run + ": the run has no snapshots yet");
    const auto& env = envs::find_env(state.at("env_id").get<std::string>());
    auto find_step = [&](long step) -> const nlohmann::json& {
      for (const auto& s : snaps)
        if (s.at("step").get<long>() == step) return s;
      throw Error(args->run + ": no snapshot at step " + std::to_string(step));
    };
    // Expert: the snapshot closest to D4RL's expert (normalized score 100).
    // modiff's SAC goes well past it (hopper: 161 at 100k steps), and the
    // bullet-D4RL scores assume an expert at about 100.
    const nlohmann::json* expert = &snaps[0];
    auto distance_to_100 = [](const nlohmann::json& s) { return std::abs(s.at("normalized_return").get<double>() - 100); };
    if (args->expert_step >= 0) expert = &find_step(args->expert_step);
    else
      for (const auto& s : snaps)
        if (distance_to_100(s) < distance_to_100(*expert)) expert = &s;
    const double expert_return = expert->at("mean_return").get<double>();
    const nlohmann::json* medium = nullptr;
    if (args->medium_step >= 0) {
      medium = &find_step(args->medium_step);
    } else {
      for (const auto& s : snaps)
        if (s.at("step").get<long>() < expert->at("step").get<long>() &&
            (!medium || std::abs(s.at("mean_return").get<double>() - expert_return / 3) <
                            std::abs(medium->at("mean_return").get<double>() - expert_return / 3)))
          medium = &s;
    }
    if (!medium) throw Error(args->run + ": no snapshot before the expert's to serve as medium");
    const fs::path to = args->to.empty() ? fs::path(behavior::behavior_dir(env)) : fs::path(args->to);
    if (!args->force && fs::exists(to / "manifest.json"))
      throw Error(to.string() + " already holds exported behavior policies: use --force to replace them");
    const ExclusiveLock lock((to.string() + ".lock"), "behavior policies " + to.string());
    fs::create_directories(to / "replay");
    auto copy_policy = [&](const nlohmann::json& snap, const std::string& name) {
      // snapshots.json names files of the run: each must lie inside it (no '..', no absolute path, no link out).
      const fs::path src = path_under(args->run, snap.at("file").get<std::string>(), args->run + "/snapshots.json");
      if (!fs::is_regular_file(src) || !fs::is_regular_file(src.string() + ".json"))
        throw Error(args->run + "/snapshots.json: snapshot " + src.string() + " (or its .json) is missing");
      fs::copy_file(src, to / name, fs::copy_options::overwrite_existing);
      fs::copy_file(src.string() + ".json", (to / name).string() + ".json", fs::copy_options::overwrite_existing);
      return nlohmann::json{{"file", name}, {"step", snap.at("step")}, {"mean_return", snap.at("mean_return")},
                            {"normalized_return", snap.at("normalized_return")}};
    };
    nlohmann::json manifest = {{"env_id", env.id},
                               {"trained_with", {{"algorithm", "SAC, CleanRL defaults (modiff behavior train)"},
                                                 {"seed", state.at("seed")},
                                                 {"steps", state.at("step")}}},
                               {"expert", copy_policy(*expert, "expert.pt")},
                               {"medium", copy_policy(*medium, "medium.pt")}};
    nlohmann::json replay = nlohmann::json::array();
    for (const auto& s : snaps)
      if (s.at("step").get<long>() < medium->at("step").get<long>()) {
        char name[64];
        std::snprintf(name, sizeof name, "replay/step_%08ld.pt", s.at("step").get<long>());
        replay.push_back(copy_policy(s, name));
      }
    behavior::SacConfig defaults;  // runs from before state.json recorded these used the defaults
    manifest["replay"] = {{"learning_starts", state.value("learning_starts", defaults.learning_starts)},
                          {"hidden", state.value("hidden", defaults.hidden)},
                          {"seed", state.at("seed")}, {"until_step", medium->at("step")}, {"snapshots", replay}};
    write_text_atomically((to / "manifest.json").string(), manifest.dump(2) + "\n");
    std::printf("exported to %s: expert step %ld (return %.1f, normalized %.1f), medium step %ld (return %.1f, "
                "normalized %.1f), %zu replay snapshots\n",
                to.string().c_str(), expert->at("step").get<long>(), expert_return,
                expert->at("normalized_return").get<double>(), medium->at("step").get<long>(),
                medium->at("mean_return").get<double>(), medium->at("normalized_return").get<double>(), replay.size());
  });
}

}  // namespace

void add_behavior_command(CLI::App& app) {
  auto* behavior = app.add_subcommand("behavior", "Behavior policies (Soft Actor-Critic) for dataset generation");
  behavior->require_subcommand(1);
  struct Args {
    behavior::SacRunOptions run;
    behavior::SacConfig config;
    bool json = false;
    int threads = 0;
  };
  auto args = std::make_shared<Args>();
  auto* train = behavior->add_subcommand("train", "Train SAC online; checkpointed and resumable");
  train->add_option("--env", args->run.env_id, "Environment")->required();
  train->add_option("--steps", args->run.total_steps, "Env steps in total")->capture_default_str()->check(integer_in(1, 1000000000));
  train->add_option("--num-envs", args->run.num_envs, "Envs stepped together (one update per env step)")
      ->capture_default_str()
      ->check(integer_in(1, 4096));
  train->add_option("--seed", args->run.seed, "Seed")->capture_default_str()->check(seed_value());
  train->add_option("--device", args->run.device, "auto, cpu or cuda")->capture_default_str()->check(one_of(kDevices));
  train->add_option("--out", args->run.out_dir, "Run directory")->capture_default_str();
  train->add_option("--snapshot-every", args->run.snapshot_every, "Steps between actor snapshots (with evaluation)")
      ->capture_default_str()
      ->check(integer_in(1, 1000000000));
  train->add_option("--eval-episodes", args->run.eval_episodes, "Episodes per snapshot evaluation")
      ->capture_default_str()
      ->check(integer_in(1, 100000));
  train->add_option("--learning-starts", args->config.learning_starts, "Random-action steps before learning")
      ->capture_default_str()
      ->check(integer_in(0, 1000000000));
  train->add_option("--batch", args->config.batch_size, "Batch size")->capture_default_str()->check(integer_in(1, 1 << 20));
  train->add_option("--threads", args->threads, "Env worker threads (0 = all cores)")->capture_default_str()->check(thread_count());
  train->add_flag("--resume", args->run.resume, "Continue the run in --out from its checkpoint");
  train->add_flag("--json", args->json, "Print the snapshots as JSON at the end (quiet meanwhile)");
  add_export(*behavior);
  train->callback([args] {
    envs::find_env(args->run.env_id);  // unknown names fail before any work
    if (args->run.snapshot_every <= 0) throw Error("--snapshot-every must be positive");
    if (args->run.eval_episodes <= 0) throw Error("--eval-episodes must be positive");
    if (args->config.batch_size <= 0) throw Error("--batch must be positive");
    limit_threads(args->threads);
    args->run.quiet = args->json;
    const auto result = behavior::train_sac(args->run, args->config);
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
