// `modiff bench env`: env-steps per second, single-threaded per env and for the
// vector env over 1..cores threads. Figures go to stdout (and --json); with
// --record FILE they replace this benchmark's section of a markdown file
// (docs/benchmarks.md) together with the machine they ran on.
#include <tbb/info.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "modiff/bench/bench.h"
#include "modiff/common/error.h"

namespace modiff::cli {
namespace {

struct BenchRow {
  std::string env;
  int threads, num_envs;
  double steps_per_s;
};

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench_cmd = app.add_subcommand("bench", "Benchmarks (figures for docs/benchmarks.md)");
  bench_cmd->require_subcommand(1);
  struct Args {
    bool json = false;
    double seconds = 2.0;
    std::string record, only_env;
    int num_envs = 0;
    std::string threads_list;
  };
  auto args = std::make_shared<Args>();
  auto* env_cmd = bench_cmd->add_subcommand("env", "Env-steps/s: one thread per env, then the vector env over thread counts");
  env_cmd->add_flag("--json", args->json, "Print JSON");
  env_cmd->add_option("--seconds", args->seconds, "Measuring time per configuration")->capture_default_str();
  env_cmd->add_option("--env", args->only_env, "Only this env (default: all four)");
  env_cmd->add_option("--num-envs", args->num_envs, "Envs in the vector env (default: 8 per thread)");
  env_cmd->add_option("--threads", args->threads_list, "Comma-separated thread counts (default: 1,2,4,... up to all cores)");
  env_cmd->add_option("--record", args->record, "Replace this benchmark's section of a markdown file (docs/benchmarks.md)");
  env_cmd->callback([args] {
    if (args->seconds <= 0) throw Error("--seconds must be positive");
    const int cores = tbb::info::default_concurrency();
    std::vector<int> thread_counts;
    if (!args->threads_list.empty()) {
      std::stringstream ss(args->threads_list);
      for (std::string t; std::getline(ss, t, ',');) {
        int v = 0;
        try {
          v = std::stoi(t);
        } catch (...) {
          throw Error("--threads: '" + t + "' is not a number");
        }
        if (v <= 0) throw Error("--threads: counts must be positive, got " + t);
        thread_counts.push_back(v);
      }
    } else {
      for (int t = 1; t < cores; t *= 2) thread_counts.push_back(t);
      thread_counts.push_back(cores);
    }
    std::vector<const envs::EnvSpec*> specs;
    if (!args->only_env.empty()) specs.push_back(&envs::find_env(args->only_env));
    else
      for (const auto& s : envs::all_envs()) specs.push_back(&s);

    std::vector<BenchRow> rows;
    for (const auto* spec : specs) {
      for (int t : thread_counts) {
        limit_threads(t);
        const int n = args->num_envs > 0 ? args->num_envs : (t == 1 ? 1 : 8 * t);
        rows.push_back({spec->id, t, n, bench::env_steps_per_second(*spec, n, args->seconds)});
        if (!args->json)
          std::fprintf(stderr, "%-24s threads %3d envs %4d: %10.0f steps/s\n", spec->id.c_str(), t, n,
                       rows.back().steps_per_s);
      }
      limit_threads(0);
    }
    const std::string machine = bench::machine_description();
    if (args->json) {
      nlohmann::json results = nlohmann::json::array();
      for (const auto& r : rows)
        results.push_back({{"env", r.env}, {"threads", r.threads}, {"num_envs", r.num_envs}, {"steps_per_s", r.steps_per_s}});
      std::cout << nlohmann::json{{"machine", machine}, {"results", results}}.dump(2) << "\n";
    }
    std::ostringstream md;
    md << "Machine: " << machine << ". Uniform random actions, auto-reset included.\n\n"
       << "| env | threads | envs | steps/s | speed-up | parallel efficiency |\n|---|---|---|---|---|---|\n";
    for (const auto& r : rows) {
      double base = 0;
      for (const auto& b : rows)
        if (b.env == r.env && b.threads == 1) base = b.steps_per_s;
      char line[256];
      std::snprintf(line, sizeof line, "| %s | %d | %d | %.0f | %.2f | %.0f%% |\n", r.env.c_str(), r.threads,
                    r.num_envs, r.steps_per_s, base > 0 ? r.steps_per_s / base : 0.0,
                    base > 0 ? 100.0 * r.steps_per_s / (base * r.threads) : 0.0);
      md << line;
    }
    if (!args->json) std::cout << md.str();
    if (!args->record.empty()) {
      bench::record_markdown_section(args->record, "bench env " + std::to_string(cores) + " cores", md.str());
    }
  });
}

}  // namespace modiff::cli
