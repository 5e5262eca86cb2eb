// `modiff bench env`: env-steps per second, single-threaded per env and for the
// vector env over 1..cores threads. Figures go to stdout (and --json); with
// --record FILE they replace this benchmark's section of a markdown file
// (docs/benchmarks.md) together with the machine they ran on.
#include <tbb/info.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "modiff/behavior/behavior_suite.h"
#include "modiff/bench/bench.h"
#include "modiff/datasets/d4rl_dataset.h"
#include "modiff/common/error.h"

namespace modiff::cli {

namespace {

// `modiff bench data`: transitions per second of dataset generation (a
// random-init SAC actor, the `random` level's path of `modiff data build`), and of
// writing the HDF5 file.
void add_data_bench(CLI::App& bench_cmd) {
  struct Args {
    long transitions = 200000;
    int num_envs = 64;
    std::string record, env = "bullet-hopper-v0";
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = bench_cmd.add_subcommand("data", "Dataset generation: transitions/s on all cores, and the file write");
  cmd->add_option("--env", args->env, "Environment")->capture_default_str();
  cmd->add_option("--transitions", args->transitions, "Transitions to generate")->capture_default_str()->check(integer_in(1, 100000000));
  cmd->add_option("--num-envs", args->num_envs, "Episodes run side by side")->capture_default_str()->check(integer_in(1, 4096));
  cmd->add_option("--record", args->record, "Replace this benchmark's section of a markdown file");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args] {
    const auto& env = envs::find_env(args->env);
    behavior::SuiteBuildOptions opt;
    opt.transitions = args->transitions;
    opt.num_envs = args->num_envs;
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    auto d = behavior::build_policy_dataset(env, "", opt);
    const auto t1 = clock::now();
    const std::string path = (std::filesystem::temp_directory_path() / "modiff_bench_data.hdf5").string();
    datasets::write_d4rl_file(path, d);
    const auto t2 = clock::now();
    std::filesystem::remove(path);
    const double gen_s = std::chrono::duration<double>(t1 - t0).count(), write_s = std::chrono::duration<double>(t2 - t1).count();
    const std::string machine = bench::machine_description();
    if (args->json) {
      std::cout << nlohmann::json{{"machine", machine}, {"env", env.id}, {"transitions", d.size()},
                                  {"generate_s", gen_s}, {"write_s", write_s},
                                  {"transitions_per_s", d.size() / gen_s}}
                       .dump(2)
                << "\n";
    }
    char md[512];
    std::snprintf(md, sizeof md,
                  "Machine: %s. %s, random-init SAC actor, %d envs: %zu transitions generated in %.2f s "
                  "(%.0f transitions/s, %.1f s per million); HDF5 write %.2f s.\n",
                  machine.c_str(), env.id.c_str(), args->num_envs, d.size(), gen_s, d.size() / gen_s, 1e6 / (d.size() / gen_s), write_s);
    if (!args->json) std::cout << md;
    if (!args->record.empty())
      bench::record_markdown_section(args->record,
                                     "bench data " + std::to_string(tbb::info::default_concurrency()) + " cores", md);
  });
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench_cmd = app.add_subcommand("bench", "Benchmarks (figures for docs/benchmarks.md)");
  bench_cmd->require_subcommand(1);
  add_data_bench(*bench_cmd);
  add_train_bench(*bench_cmd);
  add_eval_bench(*bench_cmd);
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
  env_cmd->add_option("--seconds", args->seconds, "Measuring time per configuration")->capture_default_str()->check(finite_in(0, 3600, true));
  env_cmd->add_option("--env", args->only_env, "Only this env (default: all four)");
  env_cmd->add_option("--num-envs", args->num_envs, "Envs in the vector env (default: 1 on one thread, else 32 per thread)")->check(integer_in(1, 4096));
  env_cmd->add_option("--threads", args->threads_list, "Comma-separated thread counts (default: 1,2,4,... up to all cores)")->check(positive_int_list());
  env_cmd->add_option("--record", args->record, "Replace this benchmark's section of a markdown file (docs/benchmarks.md)");
  env_cmd->callback([args] {
    if (args->seconds <= 0) throw Error("--seconds must be positive");
    const int cores = tbb::info::default_concurrency();
    std::vector<int> thread_counts;
    if (!args->threads_list.empty()) thread_counts = parse_positive_ints(args->threads_list, "--threads");
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
