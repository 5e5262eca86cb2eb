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
  env_cmd->add_option("--num-envs", args->num_envs, "Envs in the vector env (default: 1 on one thread, else 32 per thread)");
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
    }
    bench::EnvBenchOptions opt;
    opt.thread_counts = thread_counts;
    opt.num_envs = args->num_envs;
    opt.seconds = args->seconds;
    opt.progress = !args->json;
    if (!args->only_env.empty()) opt.envs.push_back(&envs::find_env(args->only_env));
    const auto rows = bench::run_env_benchmark(opt);
    const std::string machine = bench::machine_description();
    const std::string md = bench::env_benchmark_markdown(rows, machine);
    if (args->json) {
      nlohmann::json results = nlohmann::json::array();
      for (const auto& r : rows)
        results.push_back({{"env", r.env}, {"threads", r.threads}, {"num_envs", r.num_envs}, {"steps_per_s", r.steps_per_s}});
      std::cout << nlohmann::json{{"machine", machine}, {"results", results}}.dump(2) << "\n";
    } else {
      std::cout << md;
    }
    if (!args->record.empty()) {
      bench::record_markdown_section(args->record, "bench env " + std::to_string(cores) + " cores", md);
    }
  });
}

}  // namespace modiff::cli
