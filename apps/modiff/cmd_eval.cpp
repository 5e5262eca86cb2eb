// `modiff eval` and `modiff swap`: a diffusion policy rolled out over many
// seeds and episodes with a guidance module (or none), normalized scores and
// robust statistics with bootstrap intervals; every diffusion x guidance
// pairing as a matrix.
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "modiff/torch/device.h"
#include "modiff/agents/inference_policy.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/eval/evaluate.h"
#include "modiff/eval/evaluation.h"
#include "modiff/eval/statistics.h"

namespace modiff::cli {

namespace {

struct EvalArgs {
  std::string env, select, device = "auto", out, seeds = "0-4";
  int episodes = 10, candidates = 0, threads = 0, max_envs = 0, chunk = -1, bootstrap_reps = 50000;
  uint64_t bootstrap_seed = 0;
  double temperature = 1.0;
  bool json = false, force = false;
};

// --out names a file the user may already have: it is replaced only with --force, and checked before any work.
void check_out_file(const EvalArgs& a) {
  if (!a.out.empty() && !a.force && std::filesystem::exists(a.out))
    throw Error(a.out + " already exists: use --force to replace it, or another --out");
}

void add_common_options(CLI::App* cmd, EvalArgs& a) {
  cmd->add_option("--seeds", a.seeds, "Evaluation seeds: a list and/or ranges, e.g. 0-4 or 0,3,7")->capture_default_str()->check(seed_list());
  cmd->add_option("--episodes", a.episodes, "Episodes per seed")->capture_default_str()->check(integer_in(1, 1000000));
  cmd->add_option("--env", a.env, "Env (default: the one the policy was trained for)");
  cmd->add_option("--candidates", a.candidates, "Candidates per action (default: the policy's; 1 without guidance)")->check(integer_in(1, 4096));
  cmd->add_option("--select", a.select, "argmax, softmax or expectile (default: the policy's)")->check(one_of({"argmax", "softmax", "expectile"}));
  cmd->add_option("--temperature", a.temperature, "softmax: Q / temperature")->capture_default_str()->check(positive());
  cmd->add_option("--device", a.device, "auto, cpu or cuda")->capture_default_str()->check(one_of(kDevices));
  cmd->add_option("--threads", a.threads, "Physics threads (0 = all cores); results do not depend on it")->check(thread_count());
  cmd->add_option("--max-envs", a.max_envs, "Envs alive at once (0 = every episode at once)")->check(integer_in(0, 1000000));
  cmd->add_option("--chunk", a.chunk,
                  "Envs per policy pass, fixed so that results never depend on the batch (-1: 64 on CUDA, 4 on CPU; "
                  "0: all at once, fastest)")
      ->capture_default_str()
      ->check(integer_in(-1, 1000000));
  cmd->add_option("--bootstrap-reps", a.bootstrap_reps, "Bootstrap replicates for the intervals")->capture_default_str()->check(integer_in(1, 10000000));
  cmd->add_option("--bootstrap-seed", a.bootstrap_seed, "Bootstrap seed")->capture_default_str()->check(seed_value());
  cmd->add_option("--out", a.out, "Also write the JSON to this file");
  cmd->add_flag("--force", a.force, "Replace the --out file if it exists");
  cmd->add_flag("--json", a.json, "Print JSON (no progress display)");
}

using PairResult = eval::Evaluation;

// Evaluates one pairing; progress on a terminal unless quiet.
PairResult evaluate_pair(const std::string& diffusion, const std::string& guidance, const EvalArgs& a, bool quiet) {
  eval::EvalSettings s;
  s.seeds = eval::parse_seed_list(a.seeds);
  s.episodes = a.episodes;
  s.env = a.env;
  s.candidates = a.candidates;
  s.select = a.select;
  s.temperature = a.temperature;
  s.device = a.device;
  s.max_envs = a.max_envs;
  s.chunk = a.chunk;
  s.bootstrap_reps = a.bootstrap_reps;
  s.bootstrap_seed = a.bootstrap_seed;
  const bool show = !quiet && ::isatty(2);
  std::function<void(long, int, int)> progress;
  if (show)
    progress = [&](long steps, int done, int total) {
      if (steps % 50 == 0 || done == total)
        std::fprintf(stderr, "\reval %s + %s: %ld env-steps, %d/%d episodes   ", diffusion.c_str(), guidance.c_str(),
                     steps, done, total);
    };
  auto r = eval::evaluate_pairing(diffusion, guidance, s, progress);
  if (show) std::fprintf(stderr, "\n");
  for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  return r;
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

// `modiff eval`'s text output: the run, the per-seed scores, the aggregates with their intervals.
void print_evaluation(const std::string& diffusion, const PairResult& r, int episodes) {
  const auto& p = r.aggregate.point;
  std::printf("%s + %s on %s: %d seeds x %d episodes, %ld env-steps in %.1f s (%.0f env-steps/s)\n",
              diffusion.c_str(), r.json["guidance"].get<std::string>().c_str(), r.json["env"].get<std::string>().c_str(),
              p.count, episodes, r.json["env_steps"].get<long>(), r.json["seconds"].get<double>(),
              r.json["env_steps_per_s"].get<double>());
  std::printf("per-seed normalized score:");
  for (double s : r.per_seed) std::printf(" %.1f", s);
  std::printf("\nmedian %.1f [%.1f, %.1f]  IQR %.1f [%.1f, %.1f]  IQM %.1f [%.1f, %.1f]  mean %.1f [%.1f, %.1f]  std %.1f  min %.1f  max %.1f\n",
              p.median, r.aggregate.median.lo, r.aggregate.median.hi, p.iqr, r.aggregate.iqr.lo, r.aggregate.iqr.hi,
              p.iqm, r.aggregate.iqm.lo, r.aggregate.iqm.hi, p.mean, r.aggregate.mean.lo, r.aggregate.mean.hi, p.std,
              p.min, p.max);
}

// The env and the per-seed scores of an evaluation file written by `modiff eval --out`.
std::pair<std::string, std::vector<double>> load_evaluation(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open");
  nlohmann::json j;
  try {
    in >> j;
    std::vector<double> scores;
    for (const auto& s : j.at("per_seed")) scores.push_back(s.at("mean_normalized_score").get<double>());
    if (scores.empty()) throw Error(path + ": no per-seed scores");
    return std::make_pair(j.at("env").get<std::string>(), scores);
  } catch (const Error&) {
    throw;
  } catch (const std::exception&) {
    throw Error(path + ": not the JSON of `modiff eval` (per_seed, env)");
  }
}

// `modiff swap`'s text output: median (IQR) per pairing, rows the diffusion policies, columns the guidances.
void print_swap_matrix(const std::vector<std::string>& ds, const std::vector<std::string>& gs,
                       const std::vector<std::vector<PairResult>>& grid) {
  std::printf("median normalized score (IQR) over seeds; rows: diffusion, columns: guidance\n%-28s", "");
  for (size_t j = 0; j < gs.size(); ++j) std::printf(" %-18s", ("G" + std::to_string(j + 1)).c_str());
  std::printf("\n");
  for (size_t i = 0; i < ds.size(); ++i) {
    std::printf("%-28s", ("D" + std::to_string(i + 1)).c_str());
    for (size_t j = 0; j < gs.size(); ++j) {
      const auto& p = grid[i][j].aggregate.point;
      std::printf(" %-18s", (fmt(p.median) + " (" + fmt(p.iqr) + ")").c_str());
    }
    std::printf("\n");
  }
  for (size_t i = 0; i < ds.size(); ++i) std::printf("D%zu = %s\n", i + 1, ds[i].c_str());
  for (size_t j = 0; j < gs.size(); ++j) std::printf("G%zu = %s\n", j + 1, gs[j].c_str());
}

void add_single_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto diffusion = std::make_shared<std::string>(), guidance = std::make_shared<std::string>("none");
  auto* cmd = app.add_subcommand("eval", "Roll out a diffusion policy (with a guidance module or none) over seeds and episodes");
  cmd->add_option("--diffusion", *diffusion, "Diffusion policy directory (a run's diffusion/)")->required();
  cmd->add_option("--guidance", *guidance, "Guidance module directory, or none")->capture_default_str();
  add_common_options(cmd, *args);
  cmd->callback([args, diffusion, guidance] {
    if (*guidance == "none" && args->candidates > 1)
      throw Error("--candidates " + std::to_string(args->candidates) + " needs a guidance module to choose among them");
    check_out_file(*args);
    limit_threads(args->threads);
    const auto r = evaluate_pair(*diffusion, *guidance, *args, args->json);
    if (!args->out.empty()) write_text_atomically(args->out, r.json.dump(2) + "\n");
    if (args->json) {
      std::cout << r.json.dump(2) << "\n";
      return;
    }
    print_evaluation(*diffusion, r, args->episodes);
  });

}

// `modiff compare A.json B.json`: two evaluations (files written by `modiff eval --out`) side by side.
void add_compare_command(CLI::App& app) {
  auto files = std::make_shared<std::vector<std::string>>();
  auto compare_json = std::make_shared<bool>(false);
  auto* compare = app.add_subcommand("compare", "Compare two evaluations: probability of improvement, change of median and IQR");
  compare->add_option("evaluations", *files, "Two JSON files from `modiff eval --out` (A, then B)")->required()->expected(2);
  compare->add_flag("--json", *compare_json, "Print JSON");
  compare->callback([files, compare_json] {
    const auto [env_a, a] = load_evaluation((*files)[0]);
    const auto [env_b, b] = load_evaluation((*files)[1]);
    if (env_a != env_b) throw Error("the evaluations are of different envs (" + env_a + ", " + env_b + ")");
    const auto sa = eval::aggregate(a), sb = eval::aggregate(b);
    const double p = eval::probability_of_improvement({b}, {a});
    const nlohmann::json out = {{"a", (*files)[0]},
                                {"b", (*files)[1]},
                                {"probability_b_better", p},
                                {"median", {{"a", sa.median}, {"b", sb.median}, {"relative_change", eval::relative_change(sa.median, sb.median)}}},
                                {"iqr", {{"a", sa.iqr}, {"b", sb.iqr}, {"relative_change", eval::relative_change(sa.iqr, sb.iqr)}}}};
    if (*compare_json) {
      std::cout << out.dump(2) << "\n";
      return;
    }
    std::printf("P(B > A) = %.3f\nmedian %.1f -> %.1f (%+.1f%%)\nIQR %.1f -> %.1f (%+.1f%%)\n", p, sa.median, sb.median,
                100 * eval::relative_change(sa.median, sb.median), sa.iqr, sb.iqr, 100 * eval::relative_change(sa.iqr, sb.iqr));
  });

}

void add_swap_command(CLI::App& app) {
  auto swap_args = std::make_shared<EvalArgs>();
  auto diffusions = std::make_shared<std::string>(), guidances = std::make_shared<std::string>();
  auto* swap = app.add_subcommand("swap", "Every diffusion x guidance pairing (seed and cross-algorithm swaps) as a matrix");
  swap->add_option("--diffusion", *diffusions, "Comma-separated diffusion policy directories")->required();
  swap->add_option("--guidance", *guidances, "Comma-separated guidance directories (none allowed)")->required();
  add_common_options(swap, *swap_args);
  swap->callback([swap_args, diffusions, guidances] {
    check_out_file(*swap_args);
    limit_threads(swap_args->threads);
    const auto ds = split_list(*diffusions), gs = split_list(*guidances);
    if (ds.empty() || gs.empty()) throw Error("--diffusion and --guidance each need at least one directory");
    // Check every pairing before the first rollout, so that a bad one fails at once.
    for (const auto& d : ds) {
      const auto di = agents::read_artifact(d, "diffusion");
      for (const auto& g : gs)
        if (g != "none") agents::check_pairing(di, agents::read_artifact(g, "guidance"));
    }
    nlohmann::json cells = nlohmann::json::array();
    std::vector<std::vector<PairResult>> grid;
    for (const auto& d : ds) {
      grid.emplace_back();
      for (const auto& g : gs) {
        grid.back().push_back(evaluate_pair(d, g, *swap_args, swap_args->json));
        auto cell = grid.back().back().json;
        cell.erase("episodes");
        cells.push_back(cell);
      }
    }
    const nlohmann::json out = {{"diffusion", ds}, {"guidance", gs}, {"seeds", swap_args->seeds},
                                {"episodes", swap_args->episodes}, {"cells", cells}};
    if (!swap_args->out.empty()) write_text_atomically(swap_args->out, out.dump(2) + "\n");
    if (swap_args->json) {
      std::cout << out.dump(2) << "\n";
      return;
    }
    print_swap_matrix(ds, gs, grid);
  });
}

}  // namespace

void add_eval_command(CLI::App& app) {
  add_single_eval_command(app);
  add_compare_command(app);
  add_swap_command(app);
}

}  // namespace modiff::cli
