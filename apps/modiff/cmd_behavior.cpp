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
struct ExportArgs {
  std::string run, to;
  long expert_step = -1, medium_step = -1;
  bool force = false;
};

// A `modiff behavior train` run as export reads it: its checkpoint's state and its snapshots.
struct SacRunFiles {
  nlohmann::json state;
  std::vector<behavior::SnapshotRecord> snapshots;
};

SacRunFiles read_sac_run(const std::string& run) {
  namespace fs = std::filesystem;
  std::ifstream s(fs::path(run) / "checkpoint" / "state.json"), j(fs::path(run) / "snapshots.json");
  if (!s || !j) throw Error(run + ": not a `modiff behavior train` run (no checkpoint/state.json or snapshots.json)");
  SacRunFiles files;
  try {
    s >> files.state;
    files.snapshots = nlohmann::json::parse(j).get<std::vector<behavior::SnapshotRecord>>();
  } catch (const std::exception& e) {
    throw Error(run + ": unreadable run files (" + e.what() + ")");
  }
  if (files.snapshots.empty()) throw Error(run + ": the run has no snapshots yet");
  return files;
}

const behavior::SnapshotRecord& snapshot_at(const SacRunFiles& files, long step, const std::string& run) {
  for (const auto& s : files.snapshots)
    if (s.step == step) return s;
  throw Error(run + ": no snapshot at step " + std::to_string(step));
}

// Expert: the snapshot at `step`, or else the one closest to D4RL's expert (normalized score 100). modiff's SAC
// goes well past it (hopper: 161 at 100k steps), and the bullet-D4RL scores assume an expert at about 100.
const behavior::SnapshotRecord& choose_expert(const SacRunFiles& files, long step, const std::string& run) {
  if (step >= 0) return snapshot_at(files, step, run);
  const behavior::SnapshotRecord* expert = &files.snapshots[0];
  auto distance_to_100 = [](const behavior::SnapshotRecord& s) { return std::abs(s.normalized_return - 100); };
  for (const auto& s : files.snapshots)
    if (distance_to_100(s) < distance_to_100(*expert)) expert = &s;
  return *expert;
}

// Medium: the snapshot at `step`, or else the earlier one whose return is closest to a third of the expert's.
const behavior::SnapshotRecord& choose_medium(const SacRunFiles& files, const behavior::SnapshotRecord& expert,
                                              long step, const std::string& run) {
  if (step >= 0) return snapshot_at(files, step, run);
  const behavior::SnapshotRecord* medium = nullptr;
  auto distance = [&](const behavior::SnapshotRecord& s) { return std::abs(s.mean_return - expert.mean_return / 3); };
  for (const auto& s : files.snapshots)
    if (s.step < expert.step && (!medium || distance(s) < distance(*medium))) medium = &s;
  if (!medium) throw Error(run + ": no snapshot before the expert's to serve as medium");
  return *medium;
}

// Copies a snapshot's policy file (and its .json) to `to`/`name`; the record as the manifest lists it.
behavior::SnapshotRecord copy_policy(const ExportArgs& args, const std::filesystem::path& to,
                                     const behavior::SnapshotRecord& snap, const std::string& name) {
  namespace fs = std::filesystem;
  // snapshots.json names files of the run: each must lie inside it (no '..', no absolute path, no link out).
  const fs::path src = path_under(args.run, snap.file, args.run + "/snapshots.json");
  if (!fs::is_regular_file(src) || !fs::is_regular_file(src.string() + ".json"))
    throw Error(args.run + "/snapshots.json: snapshot " + src.string() + " (or its .json) is missing");
  fs::copy_file(src, to / name, fs::copy_options::overwrite_existing);
  fs::copy_file(src.string() + ".json", (to / name).string() + ".json", fs::copy_options::overwrite_existing);
  behavior::SnapshotRecord copied = snap;
  copied.file = name;
  return copied;
}

void export_behavior_policies(const ExportArgs& args) {
  namespace fs = std::filesystem;
  const SacRunFiles files = read_sac_run(args.run);
  const auto& env = envs::find_env(files.state.at("env_id").get<std::string>());
  const auto& expert = choose_expert(files, args.expert_step, args.run);
  const auto& medium = choose_medium(files, expert, args.medium_step, args.run);
  const fs::path to = args.to.empty() ? fs::path(behavior::behavior_dir(env)) : fs::path(args.to);
  if (!args.force && fs::exists(to / "manifest.json"))
    throw Error(to.string() + " already holds exported behavior policies: use --force to replace them");
  const ExclusiveLock lock((to.string() + ".lock"), "behavior policies " + to.string());
  fs::create_directories(to / "replay");
  std::vector<behavior::SnapshotRecord> replay;
  for (const auto& s : files.snapshots)
    if (s.step < medium.step) {
      char name[64];
      std::snprintf(name, sizeof name, "replay/step_%08ld.pt", s.step);
      replay.push_back(copy_policy(args, to, s, name));
    }
  const behavior::SacConfig defaults;  // runs from before state.json recorded these used the defaults
  const nlohmann::json manifest = {
      {"env_id", env.id},
      {"trained_with", {{"algorithm", "SAC, CleanRL defaults (modiff behavior train)"},
                        {"seed", files.state.at("seed")},
                        {"steps", files.state.at("step")}}},
      {"expert", copy_policy(args, to, expert, "expert.pt")},
      {"medium", copy_policy(args, to, medium, "medium.pt")},
      {"replay", {{"learning_starts", files.state.value("learning_starts", defaults.learning_starts)},
                  {"hidden", files.state.value("hidden", defaults.hidden)},
                  {"seed", files.state.at("seed")}, {"until_step", medium.step}, {"snapshots", replay}}}};
  write_text_atomically((to / "manifest.json").string(), manifest.dump(2) + "\n");
  std::printf("exported to %s: expert step %ld (return %.1f, normalized %.1f), medium step %ld (return %.1f, "
              "normalized %.1f), %zu replay snapshots\n",
              to.string().c_str(), expert.step, expert.mean_return, expert.normalized_return, medium.step,
              medium.mean_return, medium.normalized_return, replay.size());
}

void add_export(CLI::App& behavior) {
  auto args = std::make_shared<ExportArgs>();
  auto* cmd = behavior.add_subcommand("export", "Copy a run's expert, medium and replay snapshots into assets/behavior/");
  cmd->add_option("run", args->run, "Run directory of `modiff behavior train`")->required();
  cmd->add_option("--to", args->to, "Destination (default: assets/behavior/<env>)");
  cmd->add_option("--expert-step", args->expert_step, "Snapshot step for the expert (default: normalized return closest to 100)")->check(integer_in(0, 1000000000));
  cmd->add_option("--medium-step", args->medium_step, "Snapshot step for medium (default: closest to expert/3)")->check(integer_in(0, 1000000000));
  cmd->add_flag("--force", args->force, "Replace the behavior policies already in the destination");
  cmd->callback([args] { export_behavior_policies(*args); });
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
    if (args->json) {
      std::cout << nlohmann::json{{"env", args->run.env_id}, {"out", args->run.out_dir},
                                  {"env_steps_per_s", result.env_steps_per_s}, {"snapshots", result.snapshots}}
                       .dump(2)
                << "\n";
    } else {
      std::printf("done: %zu snapshots in %s/snapshots (%.0f env steps/s)\n", result.snapshots.size(),
                  args->run.out_dir.c_str(), result.env_steps_per_s);
    }
  });
}

}  // namespace modiff::cli
