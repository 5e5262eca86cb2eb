// `modiff sweep`, `modiff report` and `modiff run`: grids of trainings and
// evaluations that survive being killed, and their reports.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/eval/sweep.h"
#include "modiff/reports/report.h"

namespace modiff::cli {

namespace {

eval::SweepConfig load_config(const std::string& path) {
  if (path.empty()) return eval::parse_sweep_config(eval::default_sweep_toml(), "the built-in quickstart");
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open sweep file");
  std::stringstream ss;
  ss << in.rdbuf();
  return eval::parse_sweep_config(ss.str(), path);
}

// "K/N" (1-based K) -> (K - 1, N).
std::pair<int, int> parse_shard(const std::string& s) {
  const auto slash = s.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument(s);
    const int k = std::stoi(s.substr(0, slash)), n = std::stoi(s.substr(slash + 1));
    if (n < 1 || k < 1 || k > n) throw std::invalid_argument(s);
    return {k - 1, n};
  } catch (const std::exception&) {
    throw Error("--shard must be K/N with 1 <= K <= N, got '" + s + "'");
  }
}

// A process started by `mpirun -n K` (Open MPI) or `srun` (Slurm) runs one shard per rank. The ranks come from
// the launcher's environment, so modiff needs no MPI library: ranks share no data, only the sweep directory.
struct Rank {
  int rank = 0, size = 1, local_rank = 0;
  std::string job = "job";
  bool launched = false;
};

Rank launcher_rank() {
  Rank r;
  auto get = [](const char* name) -> const char* { return std::getenv(name); };
  if (get("OMPI_COMM_WORLD_RANK") && get("OMPI_COMM_WORLD_SIZE")) {
    r.rank = std::atoi(get("OMPI_COMM_WORLD_RANK"));
    r.size = std::atoi(get("OMPI_COMM_WORLD_SIZE"));
    r.local_rank = get("OMPI_COMM_WORLD_LOCAL_RANK") ? std::atoi(get("OMPI_COMM_WORLD_LOCAL_RANK")) : r.rank;
    r.job = get("OMPI_MCA_ess_base_jobid") ? get("OMPI_MCA_ess_base_jobid") : (get("PMIX_NAMESPACE") ? get("PMIX_NAMESPACE") : "mpi");
    r.launched = true;
  } else if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
    r.rank = std::atoi(get("SLURM_PROCID"));
    r.size = std::atoi(get("SLURM_NTASKS"));
    r.local_rank = get("SLURM_LOCALID") ? std::atoi(get("SLURM_LOCALID")) : r.rank;
    r.job = get("SLURM_JOB_ID") ? get("SLURM_JOB_ID") : "slurm";
    r.launched = true;
  }
  return r;
}

// One GPU per rank: before anything touches CUDA, each rank sees only GPU local_rank mod (GPUs on the node),
// counted from /dev/nvidiaN so that CUDA is not initialized here. An explicit CUDA_VISIBLE_DEVICES wins.
void pin_gpu(const Rank& r) {
  if (std::getenv("CUDA_VISIBLE_DEVICES")) return;
  int gpus = 0;
  while (std::filesystem::exists("/dev/nvidia" + std::to_string(gpus))) ++gpus;
  if (gpus > 0) setenv("CUDA_VISIBLE_DEVICES", std::to_string(r.local_rank % gpus).c_str(), 1);
}

void print_progress(const eval::SweepProgress& p, const std::string& out) {
  std::printf("sweep %s: %d cells ran, %d already finished, %d waiting for other shards, %d in the grid\n", out.c_str(),
              p.finished, p.skipped, p.waiting, p.total);
}

}  // namespace

void add_sweep_commands(CLI::App& app) {
  struct Args {
    std::string config, out = "runs/sweep", shard = "1/1";
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* sweep = app.add_subcommand("sweep", "Run every cell of a TOML grid (rerun to finish an interrupted sweep)");
  sweep->add_option("config", args->config, "Sweep file (configs/quickstart.toml, configs/paper.toml)")->required();
  sweep->add_option("--out", args->out, "Sweep directory")->capture_default_str();
  sweep->add_option("--shard", args->shard, "Run shard K of N (cell i goes to shard i mod N; Slurm arrays)")->capture_default_str();
  sweep->add_flag("--json", args->json, "Print JSON");
  sweep->callback([args] {
    const auto config = load_config(args->config);
    auto [k, n] = parse_shard(args->shard);
    const Rank rank = launcher_rank();
    if (rank.launched && rank.size > 1) {
      if (n != 1) throw Error("--shard and an MPI/Slurm launch both split the cells: use one of them");
      pin_gpu(rank);
      k = rank.rank;
      n = rank.size;
    }
    auto p = eval::run_sweep(config, args->out, k, n, args->json);
    if (rank.launched && rank.size > 1) {
      // Merge: every rank marks its shard done; rank 0 waits for all, then runs the swap cells that
      // waited for other ranks' trainings.
      namespace fs = std::filesystem;
      const fs::path marks = fs::path(args->out) / "ranks";
      fs::create_directories(marks);
      write_text_atomically((marks / (rank.job + "-" + std::to_string(rank.rank))).string(), "done\n");
      if (rank.rank != 0) {
        if (!args->json) print_progress(p, args->out + " (rank " + std::to_string(rank.rank) + ")");
        return;
      }
      for (int other = 1; other < rank.size; ++other)
        while (!fs::exists(marks / (rank.job + "-" + std::to_string(other))))
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const auto rest = eval::run_sweep(config, args->out, 0, 1, args->json);
      p.finished += rest.finished;
      p.waiting = rest.waiting;
      for (int r = 0; r < rank.size; ++r) fs::remove(marks / (rank.job + "-" + std::to_string(r)));
    }
    if (args->json) {
      std::cout << nlohmann::json{{"out", args->out}, {"finished", p.finished}, {"skipped", p.skipped},
                                  {"waiting", p.waiting}, {"total", p.total}}
                       .dump(2)
                << "\n";
    } else {
      print_progress(p, args->out);
    }
  });

  auto runs = std::make_shared<std::vector<std::string>>();
  auto report_out = std::make_shared<std::string>("report");
  auto* report = app.add_subcommand("report", "report.html and report.md (tables, gnuplot SVG plots) of sweeps");
  report->add_option("runs", *runs, "Sweep directories")->required();
  report->add_option("--out", *report_out, "Report directory")->capture_default_str();
  report->callback([runs, report_out] {
    const auto r = reports::write_report(*runs, *report_out);
    for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::printf("report: %s\n        %s\n", r.html.c_str(), r.markdown.c_str());
  });

  auto run_config = std::make_shared<std::string>();
  auto run_out = std::make_shared<std::string>("runs/quickstart");
  auto* run = app.add_subcommand("run", "Train then evaluate and report in one command (default: the built-in quickstart)");
  run->add_option("config", *run_config, "Sweep file (default: the quickstart, configs/quickstart.toml)");
  run->add_option("--out", *run_out, "Sweep directory; the report goes to OUT/report")->capture_default_str();
  run->callback([run_config, run_out] {
    const auto config = load_config(*run_config);
    std::printf("modiff run: %s sweep into %s\n", config.name.c_str(), run_out->c_str());
    std::fflush(stdout);
    const auto p = eval::run_sweep(config, *run_out, 0, 1, false);
    print_progress(p, *run_out);
    const auto r = reports::write_report({*run_out}, (std::filesystem::path(*run_out) / "report").string());
    for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::printf("report: %s\n        %s\n", r.html.c_str(), r.markdown.c_str());
  });
}

}  // namespace modiff::cli
