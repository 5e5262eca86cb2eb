// `modiff train`: a guidance module and a diffusion policy from an offline
// dataset, jointly or guidance-first, as separate artifacts.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "modiff/torch/device.h"
#include "modiff/agents/train.h"
#include "modiff/common/error.h"
#include "modiff/eval/evaluation.h"

namespace modiff::cli {

// The longest run a flag may ask for: 10^9 steps (the paper's longest is 2 x 10^6).
constexpr long long kMaxSteps = 1000000000;

namespace {

struct TrainArgs {
  agents::TrainOptions options;
  std::string dataset;
  int threads = 0, eval_episodes = 10;
  bool json = false;
  std::string seeds;  // --seeds: several runs together
  // Shorthands of --set, each given or not (no default of their own: the algorithm's table has it).
  std::string batch, lr, eta, ema_rate, diffusion_steps, hidden, block_width;
  bool normalize_obs = false;
};

// The shorthand flags as the --set assignments they stand for, before the explicit --set ones (so that
// those win).
std::vector<std::string> hyperparameter_shorthands(const TrainArgs& a) {
  std::vector<std::string> set;
  auto add = [&](const std::string& value, std::initializer_list<const char*> names) {
    if (!value.empty())
      for (const char* name : names) set.push_back(std::string(name) + "=" + value);
  };
  add(a.batch, {"batch"});
  add(a.lr, {"policy.lr", "guidance.lr"});
  add(a.normalize_obs ? "true" : "", {"normalize_obs"});
  add(a.eta, {"eta"});
  add(a.ema_rate, {"policy.ema_rate"});
  add(a.diffusion_steps, {"policy.diffusion_steps"});
  add(a.hidden, {"policy.hidden", "guidance.hidden"});
  add(a.block_width, {"policy.block_width"});
  set.insert(set.end(), a.options.set.begin(), a.options.set.end());
  return set;
}

// The flags that stand for --set assignments (given or not: the algorithm's table holds the defaults).
void add_hyperparameter_shorthands(CLI::App& cmd, TrainArgs& args) {
  cmd.add_option("--batch", args.batch, "Batch size (--set batch=B; idql and cfg 512, dql 256)")->check(integer_in(1, 1 << 20));
  cmd.add_option("--lr", args.lr, "Every learning rate (--set policy.lr=X --set guidance.lr=X)")->check(finite_in(0, 1, true));
  cmd.add_flag("--normalize-obs", args.normalize_obs, "Standardize observations with the dataset's statistics (--set normalize_obs=true)");
  cmd.add_option("--eta", args.eta, "dql: weight of the Q-loss (--set eta=X; 1.0)")->check(non_negative());
  cmd.add_option("--ema-rate", args.ema_rate, "The policy's EMA rate (--set policy.ema_rate=X; short runs want more)")->check(finite_in(0, 1, true));
  cmd.add_option("--diffusion-steps", args.diffusion_steps, "Diffusion steps T (--set policy.diffusion_steps=T; 5)")->check(integer_in(1, 1000));
  cmd.add_option("--hidden", args.hidden, "Hidden width of critics and denoiser (--set policy.hidden=H --set guidance.hidden=H)")->check(integer_in(1, 65536));
  cmd.add_option("--block-width", args.block_width, "Inner width of the LN-ResNet blocks (--set policy.block_width=W; 1024)")->check(integer_in(1, 65536));
}

nlohmann::json result_json(const agents::TrainResult& r, const std::string& out) {
  if (r.stopped)
    return {{"stopped", true}, {"phase", r.stopped_phase}, {"phase_step", r.stopped_phase_step},
            {"checkpoint", out + "/checkpoint"}, {"warnings", r.warnings}};
  return {{"guidance", r.guidance_dir}, {"diffusion", r.diffusion_dir}, {"metrics", r.metrics_csv},
          {"phases", r.phases}, {"stopped", false}, {"warnings", r.warnings}};
}

void print_result(const agents::TrainResult& r, const std::string& out) {
  for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (r.stopped) {
    std::printf("stopped in the %s phase at step %ld: continue with --resume --out %s\n", r.stopped_phase.c_str(),
                r.stopped_phase_step, out.c_str());
    return;
  }
  for (const auto& p : r.phases) {
    std::printf("%-9s %8ld steps  %8.1f s  %8.1f steps/s  peak %.0f MiB (%s", p.name.c_str(), p.steps, p.seconds,
                p.steps_per_s, p.peak_memory_bytes / 1048576.0, p.memory_kind.c_str());
    if (p.runs_in_process > 1) std::printf(", all %d runs together", p.runs_in_process);
    if (p.stacked_runs > 1) std::printf(", stacked %d at once", p.stacked_runs);
    std::printf(")\n");
  }
  std::printf("guidance:  %s\ndiffusion: %s\nmetrics:   %s\n", r.guidance_dir.c_str(), r.diffusion_dir.c_str(),
              r.metrics_csv.c_str());
}

// --seeds: one run per seed, trained together, run S in OUT/seed_S; every run's outcome, then one error line
// if any failed.
void train_seeds(const TrainArgs& args, const agents::TrainOptions& options) {
  std::vector<agents::TrainOptions> runs;
  for (const auto seed : eval::parse_seed_list(args.seeds)) {
    agents::TrainOptions o = options;
    o.seed = seed;
    o.out = (std::filesystem::path(options.out) / ("seed_" + std::to_string(seed))).string();
    o.quiet = true;  // one progress line per run would overwrite each other
    runs.push_back(o);
  }
  const auto results = agents::train_group(args.dataset, runs);
  nlohmann::json all = nlohmann::json::array();
  int failed = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& [r, error] = results[i];
    failed += !error.empty();
    nlohmann::json j = error.empty() ? result_json(r, runs[i].out) : nlohmann::json{{"error", error}};
    j["seed"] = runs[i].seed;
    j["out"] = runs[i].out;
    all.push_back(j);
    if (args.json) continue;
    std::printf("seed %llu (%s):%s\n", static_cast<unsigned long long>(runs[i].seed), runs[i].out.c_str(),
                error.empty() ? "" : (" " + error).c_str());
    if (error.empty()) print_result(r, runs[i].out);
  }
  if (args.json) std::cout << nlohmann::json{{"runs", all}}.dump(2) << "\n";
  if (failed > 0)
    throw Error(std::to_string(failed) + " of " + std::to_string(results.size()) + " runs failed (" +
                (args.json ? "their errors are in the JSON" : "their errors are above") + ")");
}

// `modiff train`: the shorthands and --set checked against the algorithm's table, then the run (or the runs of
// --seeds, together).
void train_command(const TrainArgs& args) {
  limit_threads(args.threads);
  auto options = args.options;
  options.set = hyperparameter_shorthands(args);
  try {  // a name or value the algorithm refuses is a bad command line
    agents::hyperparameters(options.algo, options.guidance_kind, "", options.set);
  } catch (const Error& e) {
    throw CLI::ValidationError(e.what());
  }
  if (args.json) options.quiet = true;
  if (options.eval_every > 0) {
    eval::EvalSettings settings;
    settings.device = options.device;
    options.evaluate = eval::training_curve_evaluator(settings, args.eval_episodes);
  }
  if (!args.seeds.empty()) return train_seeds(args, options);
  const auto r = agents::train(args.dataset, options);
  if (args.json)
    std::cout << result_json(r, options.out).dump(2) << "\n";
  else
    print_result(r, options.out);
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  auto& o = args->options;
  auto* cmd = app.add_subcommand("train", "Train a guidance module and a diffusion policy (idql, dql, cfg, edp) on a dataset");
  cmd->add_option("--algo", o.algo, "idql, dql, cfg or edp")->capture_default_str()->check(one_of(agents::algorithm_names()));
  cmd->add_option("--schedule", o.schedule, "joint or guidance-first")->capture_default_str()->check(one_of({"joint", "guidance-first"}));
  cmd->add_option("--dataset", args->dataset, "Dataset name (data home; bullet-D4RL names build on first use) or HDF5 file")
      ->required();
  cmd->add_option("--steps", o.steps, "Diffusion training steps (joint: steps of both)")->required()->check(integer_in(1, kMaxSteps));
  cmd->add_option("--guidance-steps", o.guidance_steps, "guidance-first: guidance steps (default: --steps)")->check(integer_in(1, kMaxSteps));
  cmd->add_option("--guidance", o.guidance_dir, "Train the diffusion under this frozen guidance artifact (guidance-first)");
  cmd->add_option("--guidance-kind", o.guidance_kind, "iql or twin-q (default: iql for idql and cfg, twin-q for dql)")->check(one_of({"iql", "twin-q"}));
  auto* seed = cmd->add_option("--seed", o.seed, "Seed")->capture_default_str()->check(seed_value());
  cmd->add_option("--seeds", args->seeds,
                  "Several runs, one per seed (0-4, 0,3,7), trained together in one process (on CUDA side by side "
                  "on the GPU), each as it would train alone, into OUT/seed_S")
      ->check(seed_list())
      ->excludes(seed);
  cmd->add_option("--device", o.device, "auto, cpu or cuda")->capture_default_str()->check(one_of(kDevices));
  cmd->add_option("--out", o.out, "Run directory (guidance/, diffusion/, metrics.csv)")->capture_default_str();
  auto* resume = cmd->add_flag("--resume", o.resume, "Continue the interrupted run in --out from its checkpoint");
  cmd->add_flag("--force", o.force, "Replace an earlier run in --out (a non-empty --out is refused otherwise)")
      ->excludes(resume);
  cmd->add_option("--log-every", o.log_every, "Steps per metrics.csv row")->capture_default_str()->check(integer_in(1, kMaxSteps));
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "Steps between checkpoints")->capture_default_str()->check(integer_in(1, kMaxSteps));
  cmd->add_option("--stop-after", o.stop_after,
                  "Checkpoint and stop once this invocation has trained K steps (rounded up to --log-every); --resume continues")
      ->check(integer_in(1, kMaxSteps));
  cmd->add_option("--set", o.set,
                  "Override a hyperparameter, NAME=VALUE (repeatable; `modiff hyperparameters --algo A` lists them)")
      ->type_name("NAME=VALUE");
  add_hyperparameter_shorthands(*cmd, *args);
  cmd->add_flag("!--no-cuda-graphs", o.cuda_graphs, "On CUDA, run every step eagerly instead of replaying a captured graph");
  cmd->add_option("--implementation", o.implementation,
                  "fast, or reference: plain LibTorch modules a reader can follow, every step eager (docs/architecture.md)")
      ->capture_default_str()
      ->check(one_of({"fast", "reference"}));
  cmd->add_option("--eval-every", o.eval_every,
                  "Evaluate the policy with and without its guidance every K steps (rounded to --log-every) into metrics.csv")
      ->check(integer_in(1, kMaxSteps));
  cmd->add_option("--eval-episodes", args->eval_episodes, "Episodes per evaluation (seeds 0..E-1)")->capture_default_str()->check(integer_in(1, 100000));
  cmd->add_option("--threads", args->threads, "CPU threads for products and the evaluator (0 = all cores); results do not depend on it")
      ->check(thread_count());
  cmd->add_flag("--json", args->json, "Print the result as JSON (no progress line)");
  cmd->callback([args] { train_command(*args); });
}

}  // namespace modiff::cli
