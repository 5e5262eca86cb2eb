// `modiff bench train`: training steps/s and peak memory of every algorithm x
// schedule on hopper-shaped synthetic data (obs 15, act 3), the shape the
// official implementations were timed on (../shared/reference/algorithms.md),
// at the reference batch sizes; guidance-first against joint.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "modiff/agents/artifact.h"
#include "modiff/torch/device.h"
#include "modiff/agents/train.h"
#include "modiff/bench/bench.h"
#include "modiff/bench/synthetic_data.h"
#include "modiff/common/error.h"
#include "modiff/common/remove_tree.h"
#include "modiff/common/spawn.h"

namespace modiff::cli {

namespace {

// Steady-state steps/s of a phase: metrics.csv rows after its first (which holds warm-up and graph capture).
double steady_steps_per_s(const std::string& metrics_csv, const std::string& phase, double fallback) {
  std::ifstream in(metrics_csv);
  std::string line;
  std::getline(in, line);
  double ms_sum = 0;
  int n = 0, seen = 0;
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::vector<std::string> cells;
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
    if (cells.size() < 3 || cells[1] != phase) continue;
    if (seen++ == 0) continue;
    ms_sum += std::stod(cells.back());
    ++n;
  }
  return n > 0 ? 1000.0 * n / ms_sum : fallback;
}

// One phase of one algorithm x schedule, as `--json` prints it.
struct Cell {
  std::string algo, schedule, phase;
  int batch = 0;
  double steps_per_s = 0, seconds = 0;
  long peak_memory_bytes = 0;
  std::string memory_kind;
  int runs = 1;  // trained together (train_group_on): steps_per_s is their sum, the peak their group's
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Cell, algo, schedule, phase, batch, steps_per_s, seconds, peak_memory_bytes,
                                   memory_kind, runs)

// One algorithm x schedule in a child process of this binary, so that its peak memory is its own: in one
// process a cell's allocator peak also held what earlier cells left (cuBLAS keeps a workspace for every
// stream a run used, and the joint runs use more streams), which blurred guidance-first against joint.
std::vector<Cell> run_in_child(const std::string& algo, const std::string& schedule, long steps, int runs,
                               const std::string& device, bool graphs, const std::string& implementation) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<std::string> argv = {self, "bench", "train", "--json", "--algos", algo, "--schedules", schedule,
                                   "--steps", std::to_string(steps), "--device", device,
                                   "--implementation", implementation, "--runs", std::to_string(runs)};
  if (!graphs) argv.push_back("--no-cuda-graphs");
  SpawnOptions options;
  options.capture_stdout = true;
  const SpawnResult child = run_program(argv, options);
  if (child.exit_code != 0) throw Error("bench train: the " + algo + " " + schedule + " run failed (its error is above)");
  const std::string& out = child.out;
  try {
    return nlohmann::json::parse(out).at("results").get<std::vector<Cell>>();
  } catch (const std::exception& e) {
    throw Error("bench train: unreadable result of the " + algo + " " + schedule + " run (" + e.what() + ")");
  }
}

struct TrainBenchArgs {
  long steps = 0;
  std::string device = "auto", algos = "idql,dql,cfg,edp", schedules = "joint,guidance-first", record;
  std::string implementation = "fast", runs = "1";
  bool json = false, graphs = true;
};

// One algorithm x schedule trained in this process on synthetic Hopper-shaped data, `runs` runs together (seeds
// 0..runs-1, one copy of the data): its phases as cells, steps/s summed over the runs.
std::vector<Cell> run_here(const std::string& algo, const std::string& schedule, long steps, int runs,
                           const TrainBenchArgs& args) {
  const auto data = bench::synthetic_dataset(envs::find_env("bullet-hopper-v0"), 100000, 1);
  const agents::DatasetRef ref{"synthetic-hopper", "synthetic", "bullet-hopper-v0"};
  const auto root = std::filesystem::temp_directory_path() / ("modiff_bench_train_" + std::to_string(::getpid()));
  std::vector<agents::GroupMember> members;
  for (int k = 0; k < runs; ++k) {
    agents::TrainOptions o;
    o.algo = algo;
    o.schedule = schedule;
    o.steps = steps;
    if (schedule == "guidance-first") o.guidance_steps = steps;
    o.device = args.device;
    o.seed = static_cast<uint64_t>(k);
    o.out = (root / (algo + "_" + schedule + "_" + std::to_string(k))).string();
    o.quiet = true;
    o.log_every = std::max(1L, steps / 10);
    o.checkpoint_every = steps * 10;
    o.cuda_graphs = args.graphs;
    o.implementation = args.implementation;
    members.push_back({&data, ref, o});
  }
  const auto results = agents::train_group_on(members);
  for (const auto& r : results)
    if (!r.error.empty()) throw Error("bench train: " + r.error);
  const auto& first = results.front().result;
  const int batch = nlohmann::json::parse(agents::read_artifact(first.diffusion_dir, "diffusion").manifest_text)
                        .at("training").at("batch");
  std::vector<Cell> cells;
  for (size_t p = 0; p < first.phases.size(); ++p) {
    const auto& phase = first.phases[p];
    Cell cell{algo, schedule, phase.name, batch, 0, 0, phase.peak_memory_bytes, phase.memory_kind, runs};
    for (const auto& r : results) {
      const auto& mine = r.result.phases[p];
      cell.steps_per_s += steady_steps_per_s(r.result.metrics_csv, mine.name, mine.steps_per_s);
      cell.seconds = std::max(cell.seconds, mine.seconds);
    }
    cells.push_back(cell);
  }
  remove_tree(root.string());
  return cells;
}

// Many runs at once against one: aggregate steps/s and the group's peak memory against the number of runs.
std::string scaling_rows(const std::vector<Cell>& cells) {
  std::ostringstream rows;
  char buf[256];
  for (const auto& c : cells) {
    double single = 0;
    for (const auto& one : cells)
      if (one.runs == 1 && one.algo == c.algo && one.schedule == c.schedule && one.phase == c.phase)
        single = one.steps_per_s;
    std::snprintf(buf, sizeof buf, "| %s | %s | %s | %d | %.0f | %.0f | %s | %.0f | %.0f |\n", c.algo.c_str(),
                  c.schedule.c_str(), c.phase.c_str(), c.runs, c.steps_per_s, c.steps_per_s / c.runs,
                  single > 0 ? (std::to_string(c.steps_per_s / single).substr(0, 4) + "x").c_str() : "-",
                  c.peak_memory_bytes / 1048576.0, c.peak_memory_bytes / 1048576.0 / c.runs);
    rows << buf;
  }
  return rows.str();
}

// Guidance-first against joint: the diffusion phase against the joint phase, same steps (markdown rows).
std::string schedule_comparison_rows(const std::vector<Cell>& cells) {
  std::ostringstream cmp;
  char buf[256];
  for (const auto& j : cells) {
    if (j.phase != "joint") continue;
    for (const auto& g : cells) {
      if (g.algo != j.algo || g.phase != "diffusion") continue;
      std::snprintf(buf, sizeof buf, "| %s | %+.1f%% | %+.1f%% |\n", j.algo.c_str(),
                    100.0 * (j.steps_per_s / g.steps_per_s - 1),
                    100.0 * (double(g.peak_memory_bytes) / j.peak_memory_bytes - 1));
      cmp << buf;
    }
  }
  return cmp.str();
}

// The joint cells beside the official implementations' steps/s on one H200 (markdown rows).
std::string official_comparison_rows(const std::vector<Cell>& cells) {
  std::ostringstream rows;
  for (const auto& c : cells) {
    if (c.phase != "joint") continue;
    if (c.algo == "dql" && c.batch == 256)
      rows << "| Diffusion-QL, batch 256 | 81.5 | " << static_cast<long>(c.steps_per_s) << " | "
           << c.steps_per_s / 81.5 << "x |\n";
    if (c.algo == "idql" && c.batch == 512)
      rows << "| IDQL, batch 512 | 619 | " << static_cast<long>(c.steps_per_s) << " | " << c.steps_per_s / 619
           << "x |\n";
  }
  return rows.str();
}

std::string train_bench_markdown(const std::vector<Cell>& cells, const std::string& machine, long steps, bool cuda,
                                 const TrainBenchArgs& args) {
  std::ostringstream md;
  const bool graphed = cuda && args.graphs && args.implementation == "fast";
  md << "Machine: " << machine << ". Hopper-shaped synthetic data (100k rows), " << steps << " steps per phase"
     << (args.implementation == "fast" ? "" : ", the " + args.implementation + " implementation")
     << "; steps/s in steady state (after warm-up" << (graphed ? " and CUDA-graph capture" : "")
     << "), peak memory: " << (cuda ? "CUDA allocator peak" : "process peak RSS")
     << " during the phase; each algorithm x schedule in a process of its own.\n\n";
  bool grouped = false;
  for (const auto& c : cells) grouped = grouped || c.runs > 1;
  if (grouped) {
    md << "| algorithm | schedule | phase | runs | aggregate steps/s | per run | vs one run | peak memory (MiB), all "
          "runs | per run |\n|---|---|---|---|---|---|---|---|---|\n"
       << scaling_rows(cells);
    return md.str();
  }
  md << "| algorithm | schedule | phase | batch | steps/s | ms/step | peak memory (MiB) |\n|---|---|---|---|---|---|---|\n";
  char buf[256];
  for (const auto& c : cells) {
    std::snprintf(buf, sizeof buf, "| %s | %s | %s | %d | %.1f | %.3f | %.0f |\n", c.algo.c_str(), c.schedule.c_str(),
                  c.phase.c_str(), c.batch, c.steps_per_s, 1000.0 / c.steps_per_s, c.peak_memory_bytes / 1048576.0);
    md << buf;
  }
  if (const std::string cmp = schedule_comparison_rows(cells); !cmp.empty())
    md << "\nGuidance-first against joint (the paper claims -65.6% diffusion training time, -38.1% peak memory):\n\n"
       << "| algorithm | diffusion-phase time vs joint | diffusion-phase peak memory vs joint |\n|---|---|---|\n"
       << cmp;
  if (const std::string official = cuda ? official_comparison_rows(cells) : ""; !official.empty())
    md << "\nAgainst the official implementations on one H200 (joint training, the published algorithm):\n\n"
       << "| implementation | official steps/s | modiff steps/s | ratio |\n|---|---|---|---|\n" << official;
  return md.str();
}

}  // namespace

void add_train_bench(CLI::App& bench_cmd) {
  auto args = std::make_shared<TrainBenchArgs>();
  auto* cmd = bench_cmd.add_subcommand("train", "Training steps/s and peak memory, every algorithm x schedule");
  cmd->add_option("--steps", args->steps, "Steps per phase (default: 3000 on CUDA, 100 on CPU)")->check(integer_in(1, 1000000000));
  cmd->add_option("--device", args->device, "auto, cpu or cuda")->capture_default_str()->check(one_of(kDevices));
  cmd->add_option("--algos", args->algos, "Comma-separated algorithms")->capture_default_str()->check(list_of(agents::algorithm_names()));
  cmd->add_option("--schedules", args->schedules, "Comma-separated schedules")->capture_default_str()->check(list_of({"joint", "guidance-first"}));
  cmd->add_option("--runs", args->runs,
                  "Comma-separated numbers of runs trained together in one process (1,2,4,8,16,32): aggregate steps/s "
                  "and the group's peak memory")
      ->capture_default_str()
      ->check(positive_int_list());
  cmd->add_flag("!--no-cuda-graphs", args->graphs, "Run eagerly on CUDA");
  cmd->add_option("--implementation", args->implementation, "fast or reference (plain LibTorch modules, eager)")
      ->capture_default_str()
      ->check(one_of({"fast", "reference"}));
  cmd->add_option("--record", args->record, "Replace this benchmark's section of a markdown file (docs/benchmarks.md)");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args] {
    const auto device = modiff::resolve_device(args->device);
    const bool cuda = device.kind == modiff::DeviceKind::Cuda;
    const long steps = args->steps > 0 ? args->steps : (cuda ? 3000 : 100);
    const auto algos = split_list(args->algos), schedules = split_list(args->schedules);
    if (algos.empty() || schedules.empty()) throw Error("--algos and --schedules need at least one name each");
    std::vector<Cell> cells;
    const std::vector<int> runs = parse_positive_ints(args->runs, "--runs");
    // One cell is trained here; several each in a child process of its own.
    const bool alone = algos.size() * schedules.size() * runs.size() == 1;
    for (const auto& algo : algos) {
      for (const auto& schedule : schedules) {
        for (int k : runs) {
          if (!args->json)
            std::fprintf(stderr, "bench train: %s %s, %d run(s), %ld steps per phase...\n", algo.c_str(),
                         schedule.c_str(), k, steps);
          const auto done = alone ? run_here(algo, schedule, steps, k, *args)
                                  : run_in_child(algo, schedule, steps, k, args->device, args->graphs,
                                                 args->implementation);
          cells.insert(cells.end(), done.begin(), done.end());
        }
      }
    }
    const std::string machine = bench::machine_description() + "; " + device.description;
    const std::string md = train_bench_markdown(cells, machine, steps, cuda, *args);
    if (args->json)
      std::cout << nlohmann::json{{"machine", machine}, {"steps", steps}, {"results", cells}}.dump(2) << "\n";
    else
      std::cout << md;
    if (!args->record.empty())
      bench::record_markdown_section(args->record,
                                     std::string("bench train ") + (args->runs == "1" ? "" : "runs ") + (cuda ? "cuda" : "cpu"), md);
  });
}

}  // namespace modiff::cli
