// `modiff bench eval`: env-steps/s of the evaluator with diffusion policies
// choosing among candidates, over numbers of policies evaluated together and of
// envs per policy. The weights do not matter for speed: policies trained for one
// step on synthetic halfcheetah-shaped data are used (each loaded as a policy of
// its own), on halfcheetah, whose episodes never terminate early (every env
// stays live for the measured steps).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "modiff/torch/device.h"
#include "modiff/agents/inference_policy.h"
#include "modiff/agents/train.h"
#include "modiff/bench/bench.h"
#include "modiff/bench/synthetic_data.h"
#include "modiff/common/error.h"
#include "modiff/common/remove_tree.h"
#include "modiff/eval/evaluate.h"

namespace modiff::cli {

namespace {

struct EvalBenchArgs {
  std::string device = "auto", envs = "1,16,64,100,256", algos = "idql,dql", policies = "1", stacking = "auto", record;
  int steps = 0, candidates = 64, chunk = -1;
  bool json = false;
};

struct EvalBenchRow {
  std::string algo;
  int policies = 1, envs = 0;  // envs per policy
  double env_steps_per_s = 0, ms_per_step = 0;
  long stacked_passes = 0;     // per env step
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(EvalBenchRow, algo, policies, envs, env_steps_per_s, ms_per_step, stacked_passes)

agents::PassStacking stacking_named(const std::string& name) {
  if (name == "auto") return agents::PassStacking::Auto;
  if (name == "never") return agents::PassStacking::Never;
  return agents::PassStacking::Always;
}

// One algorithm's policies (trained one step on synthetic data: speed does not depend on the weights) timed over
// each number of policies evaluated together and of envs per policy, `steps` env steps per env after a warm-up.
std::vector<EvalBenchRow> time_policy(const std::string& algo, const std::vector<int>& policy_counts,
                                      const std::vector<int>& counts, int steps, const EvalBenchArgs& args,
                                      const std::filesystem::path& root) {
  const auto& env = envs::find_env("bullet-halfcheetah-v0");
  const auto data = bench::synthetic_dataset(env, 4000, 1);
  agents::TrainOptions o;
  o.algo = algo;
  o.steps = 1;
  o.device = args.device;
  o.quiet = true;
  o.out = (root / algo).string();
  const auto trained = agents::train_on(data, {"synthetic", "synthetic", env.id}, o);
  agents::InferenceOptions io;
  io.device = args.device;
  io.candidates = args.candidates;
  io.select = "argmax";
  io.chunk = args.chunk;
  std::vector<agents::InferencePolicy> policies;
  const int most = *std::max_element(policy_counts.begin(), policy_counts.end());
  for (int i = 0; i < most; ++i)
    policies.push_back(agents::InferencePolicy::load(trained.diffusion_dir, trained.guidance_dir, io));
  std::vector<EvalBenchRow> rows;
  for (int p : policy_counts)
    for (int n : counts) {
      std::vector<eval::EvalJob> jobs;
      for (int i = 0; i < p; ++i) {
        jobs.push_back({&policies[static_cast<size_t>(i)], {}, 1});
        for (int s = 0; s < n; ++s) jobs.back().seeds.push_back(s);
      }
      eval::EvalPool pool;
      pool.stacking = stacking_named(args.stacking);
      pool.max_steps = 3;  // warm-up: allocations, kernels' first launches
      eval::evaluate_many(jobs, env, pool);
      pool.max_steps = steps;
      long env_steps = 0, passes = 0;
      const auto t0 = std::chrono::steady_clock::now();
      eval::evaluate_many(jobs, env, pool, &env_steps, &passes);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rows.push_back({algo, p, n, env_steps / secs, 1000.0 * secs / steps, passes / steps});
      if (!args.json)
        std::fprintf(stderr, "bench eval: %s, %d policies x %d envs: %.0f env-steps/s\n", algo.c_str(), p, n,
                     env_steps / secs);
    }
  return rows;
}

std::string eval_bench_markdown(const std::vector<EvalBenchRow>& rows, const std::string& machine, int steps,
                                bool cuda, const EvalBenchArgs& args) {
  std::ostringstream md;
  md << "Machine: " << machine << ". halfcheetah, " << steps << " steps per env, " << args.candidates
     << " candidates per action, argmax of min Q, "
     << (args.chunk == 0 ? std::string("one policy pass over all envs")
                         : "policy passes of a fixed " +
                               (args.chunk < 0 ? std::string(cuda ? "64" : "4") : std::to_string(args.chunk)) +
                               " envs (reproducible whatever the batch)")
     << "; policies evaluated together in one episode pool, "
     << (args.stacking == "never" ? std::string("each in passes of its own")
                                  : "those alike in stacked passes (" + args.stacking + ")")
     << "; env reset and warm-up excluded.\n\n| policy | policies | envs per policy | env-steps/s, all policies | ms "
        "per batched step | stacked passes per step |\n|---|---|---|---|---|---|\n";
  char buf[200];
  for (const auto& r : rows) {
    std::snprintf(buf, sizeof buf, "| %s | %d | %d | %.0f | %.2f | %ld |\n", r.algo.c_str(), r.policies, r.envs,
                  r.env_steps_per_s, r.ms_per_step, r.stacked_passes);
    md << buf;
  }
  for (const auto& r : rows)
    if (r.envs == 100 && r.policies == 1) {
      std::snprintf(buf, sizeof buf,
                    "\n%s: 100 episodes of 1000 steps (100 envs at once) take %.1f s; the official code needs 4 to 7 "
                    "minutes (2.4-4.1 ms per action, one env at a time).\n",
                    r.algo.c_str(), 100000.0 / r.env_steps_per_s);
      md << buf;
    }
  return md.str();
}

void run_eval_bench(const EvalBenchArgs& args) {
  const auto device = modiff::resolve_device(args.device);
  const bool cuda = device.kind == modiff::DeviceKind::Cuda;
  const int steps = args.steps > 0 ? args.steps : (cuda ? 1000 : 20);
  const auto root = std::filesystem::temp_directory_path() / ("modiff_bench_eval_" + std::to_string(::getpid()));
  const std::vector<int> counts = parse_positive_ints(args.envs, "--envs");
  const std::vector<int> policy_counts = parse_positive_ints(args.policies, "--policies");
  std::vector<EvalBenchRow> rows;
  for (const auto& algo : split_list(args.algos)) {
    const auto timed = time_policy(algo, policy_counts, counts, steps, args, root);
    rows.insert(rows.end(), timed.begin(), timed.end());
  }
  remove_tree(root.string());
  const std::string machine = bench::machine_description() + "; " + device.description;
  const std::string md = eval_bench_markdown(rows, machine, steps, cuda, args);
  if (args.json)
    std::cout << nlohmann::json{{"machine", machine}, {"steps", steps}, {"results", rows}}.dump(2) << "\n";
  else
    std::cout << md;
  if (!args.record.empty())
    bench::record_markdown_section(args.record, std::string("bench eval ") + (cuda ? "cuda" : "cpu"), md);
}

}  // namespace

void add_eval_bench(CLI::App& bench_cmd) {
  auto args = std::make_shared<EvalBenchArgs>();
  auto* cmd = bench_cmd.add_subcommand("eval", "Evaluator env-steps/s with candidate selection over numbers of envs");
  cmd->add_option("--device", args->device, "auto, cpu or cuda")->capture_default_str()->check(one_of(kDevices));
  cmd->add_option("--envs", args->envs, "Comma-separated numbers of envs")->capture_default_str()->check(positive_int_list());
  cmd->add_option("--algos", args->algos, "Policies to time: idql, dql, cfg, edp")->capture_default_str()->check(list_of(agents::algorithm_names()));
  cmd->add_option("--policies", args->policies, "Comma-separated numbers of policies evaluated together (each on --envs envs)")
      ->capture_default_str()
      ->check(positive_int_list());
  cmd->add_option("--stacking", args->stacking, "Policies alike in stacked passes: auto (on CUDA), always, never")
      ->capture_default_str()
      ->check(one_of({"auto", "always", "never"}));
  cmd->add_option("--steps", args->steps, "Env steps per env (default: 1000 on CUDA, 20 on CPU)")->check(integer_in(1, 1000000));
  cmd->add_option("--candidates", args->candidates, "Candidates per action")->capture_default_str()->check(integer_in(1, 4096));
  cmd->add_option("--chunk", args->chunk, "Envs per policy pass (-1: the evaluator's default, 64 on CUDA and 4 on CPU; 0: all at once)")
      ->capture_default_str()
      ->check(integer_in(-1, 1000000));
  cmd->add_option("--record", args->record, "Replace this benchmark's section of a markdown file (docs/benchmarks.md)");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args] { run_eval_bench(*args); });
}

}  // namespace modiff::cli
