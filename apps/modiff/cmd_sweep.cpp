// `modiff sweep`, `modiff report` and `modiff run`: grids of trainings and
// evaluations that survive being killed, and their reports.
#include <cctype>
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
#include "modiff/sweeps/sweep.h"
#include "modiff/reports/report.h"

namespace modiff::cli {

namespace {

sweeps::SweepConfig load_config(const std::string& path) {
  if (path.empty()) return sweeps::parse_sweep_config(sweeps::default_sweep_toml(), "the built-in quickstart");
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open sweep file");
  std::stringstream ss;
  ss << in.rdbuf();
  return sweeps::parse_sweep_config(ss.str(), path);
}

// "K/N" with 1 <= K <= N -> (K - 1, N); false for anything else.
bool parse_shard(const std::string& s, std::pair<int, int>& shard) {
  const auto slash = s.find('/');
  long long k = 0, n = 0;
  if (slash == std::string::npos || !parse_integer(s.substr(0, slash), k) || !parse_integer(s.substr(slash + 1), n) ||
      k < 1 || k > n || n > (1 << 20))
    return false;
  shard = {static_cast<int>(k - 1), static_cast<int>(n)};
  return true;
}

CLI::Validator shard_spec() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        std::pair<int, int> shard;
        return parse_shard(text, shard) ? "" : "'" + text + "' is not K/N with 1 <= K <= N";
      },
      "K/N");
}

// A process started by `mpirun -n K` (Open MPI) or `srun` (Slurm) runs one shard per rank. The ranks come from
// the launcher's environment, so modiff needs no MPI library: ranks share no data, only the sweep directory.
struct Rank {
  int rank = 0, size = 1, local_rank = 0;
  std::string job = "job";
  bool launched = false;
};

// A launcher variable holding a rank or a size: a whole number in [0, 2^20].
int rank_number(const char* name, int fallback) {
  const char* text = std::getenv(name);
  if (!text) return fallback;
  long long v = 0;
  if (!parse_integer(text, v) || v < 0 || v > (1 << 20))
    throw Error(std::string(name) + " = '" + text + "' is not a rank number");
  return static_cast<int>(v);
}

// The job id names the ranks' mark files: only letters, digits, '_' and '-' survive, so that no launcher
// variable can lead the files out of the sweep's ranks/ folder.
std::string job_name(const char* text) {
  std::string s;
  for (const char* p = text; *p && s.size() < 64; ++p)
    s += std::isalnum(static_cast<unsigned char>(*p)) || *p == '-' ? *p : '_';
  return s.empty() ? "job" : s;
}

Rank launcher_rank() {
  Rank r;
  auto get = [](const char* name) -> const char* { return std::getenv(name); };
  if (get("OMPI_COMM_WORLD_RANK") && get("OMPI_COMM_WORLD_SIZE")) {
    r.rank = rank_number("OMPI_COMM_WORLD_RANK", 0);
    r.size = rank_number("OMPI_COMM_WORLD_SIZE", 1);
    r.local_rank = rank_number("OMPI_COMM_WORLD_LOCAL_RANK", r.rank);
    r.job = job_name(get("OMPI_MCA_ess_base_jobid") ? get("OMPI_MCA_ess_base_jobid")
                                                     : (get("PMIX_NAMESPACE") ? get("PMIX_NAMESPACE") : "mpi"));
    r.launched = true;
  } else if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
    r.rank = rank_number("SLURM_PROCID", 0);
    r.size = rank_number("SLURM_NTASKS", 1);
    r.local_rank = rank_number("SLURM_LOCALID", r.rank);
    r.job = job_name(get("SLURM_JOB_ID") ? get("SLURM_JOB_ID") : "slurm");
    r.launched = true;
  }
  if (r.launched && (r.size < 1 || r.rank >= r.size))
    throw Error("the launcher gives rank " + std::to_string(r.rank) + " of " + std::to_string(r.size) + " ranks");
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

// Rank 0 waits for every other rank's "done" mark. A rank shows it is alive by touching its "alive" mark after
// each cell; one that shows no sign of life for `timeout_s` (killed, its node lost) is named and the wait ends
// with an error (its cells stay unfinished: a rerun of the sweep finishes them).
void wait_for_ranks(const std::filesystem::path& marks, const Rank& rank, double timeout_s) {
  namespace fs = std::filesystem;
  auto mark = [&](int r, const char* kind) { return marks / (rank.job + "-" + std::to_string(r) + kind); };
  for (int other = 1; other < rank.size; ++other) {
    const auto started_waiting = fs::file_time_type::clock::now();
    while (!fs::exists(mark(other, ".done"))) {
      std::error_code ec;
      const auto alive = fs::last_write_time(mark(other, ".alive"), ec);
      const auto last_sign = ec ? started_waiting : std::max(alive, started_waiting);
      const double silent = std::chrono::duration<double>(fs::file_time_type::clock::now() - last_sign).count();
      if (silent > timeout_s)
        throw Error("sweep: rank " + std::to_string(other) + " of " + std::to_string(rank.size) +
                    " has not finished and showed no sign of life for " + std::to_string(static_cast<long>(silent)) +
                    " s (--rank-timeout; marks in " + marks.string() + "); rerun the sweep to finish its cells");
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
}

void print_progress(const sweeps::SweepProgress& p, const std::string& out) {
  std::printf("sweep %s: %d cells ran, %d already finished, %d waiting for other shards, %d run by another process, "
              "%d in the grid\n",
              out.c_str(), p.finished, p.skipped, p.waiting, p.busy, p.total);
}

struct SweepArgs {
  std::string config, out = "runs/sweep", shard = "1/1";
  double rank_timeout = 3600;
  int group_runs = 0;
  bool json = false, redo_changed = false;
};

// `modiff sweep`: this process's share of the cells (a --shard, or an MPI/Slurm rank), then on rank 0 the cells
// that waited for other ranks.
void run_sweep_command(const SweepArgs& args) {
  const auto config = load_config(args.config);
  std::pair<int, int> shard;
  parse_shard(args.shard, shard);  // checked by the flag's validator
  auto [k, n] = shard;
  const Rank rank = launcher_rank();
  const bool ranks = rank.launched && rank.size > 1;
  namespace fs = std::filesystem;
  const fs::path marks = fs::path(args.out) / "ranks";
  auto mark = [&](const char* kind) { return (marks / (rank.job + "-" + std::to_string(rank.rank) + kind)).string(); };
  sweeps::SweepRunOptions run;
  run.quiet = args.json;
  run.redo_changed = args.redo_changed;
  run.group_runs = args.group_runs;
  if (ranks) {
    if (n != 1) throw Error("--shard and an MPI/Slurm launch both split the cells: use one of them");
    if (args.redo_changed && rank.rank != 0) run.redo_changed = false;  // rank 0 alone empties changed cells
    pin_gpu(rank);
    k = rank.rank;
    n = rank.size;
    fs::create_directories(marks);
    write_text_atomically(mark(".alive"), "alive\n");
    run.after_cell = [&] { write_text_atomically(mark(".alive"), "alive\n"); };
  }
  run.shard = k;
  run.shards = n;
  auto p = sweeps::run_sweep(config, args.out, run);
  if (ranks) {
    // Merge: every rank marks its shard done; rank 0 waits for all, then runs the swap cells that
    // waited for other ranks' trainings.
    write_text_atomically(mark(".done"), "done\n");
    if (rank.rank != 0) {
      if (!args.json) print_progress(p, args.out + " (rank " + std::to_string(rank.rank) + ")");
      return;
    }
    wait_for_ranks(marks, rank, args.rank_timeout);
    sweeps::SweepRunOptions rest_run;
    rest_run.quiet = args.json;
    rest_run.group_runs = args.group_runs;
    const auto rest = sweeps::run_sweep(config, args.out, rest_run);
    p.finished += rest.finished;
    p.waiting = rest.waiting;
    p.busy = rest.busy;
    for (int r = 0; r < rank.size; ++r)
      for (const char* kind : {".done", ".alive"}) fs::remove(marks / (rank.job + "-" + std::to_string(r) + kind));
  }
  if (args.json) {
    std::cout << nlohmann::json{{"out", args.out}, {"finished", p.finished}, {"skipped", p.skipped},
                                {"waiting", p.waiting}, {"busy", p.busy}, {"total", p.total}}
                     .dump(2)
              << "\n";
  } else {
    print_progress(p, args.out);
  }
}

void add_sweep_command(CLI::App& app) {
  auto args = std::make_shared<SweepArgs>();
  auto* sweep = app.add_subcommand("sweep", "Run every cell of a TOML grid (rerun to finish an interrupted sweep)");
  sweep->add_option("config", args->config, "Sweep file (configs/quickstart.toml, configs/paper.toml)")->required();
  sweep->add_option("--out", args->out, "Sweep directory")->capture_default_str();
  sweep->add_option("--shard", args->shard, "Run shard K of N (cell i goes to shard i mod N; Slurm arrays)")
      ->capture_default_str()
      ->check(shard_spec());
  sweep->add_flag("--redo-changed", args->redo_changed,
                  "Redo the cells whose definition (data, steps, networks, evaluation) differs from the config's");
  sweep->add_option("--rank-timeout", args->rank_timeout,
                    "MPI/Slurm: seconds rank 0 waits for a rank that shows no sign of life before giving up")
      ->capture_default_str()
      ->check(finite_in(0, 1e7, true));
  sweep->add_option("--group-runs", args->group_runs,
                    "Train cells trained at once in this process, side by side (0: 16 on CUDA, 1 on the CPU)")
      ->capture_default_str()
      ->check(integer_in(0, 4096));
  sweep->add_flag("--json", args->json, "Print JSON");
  sweep->callback([args] { run_sweep_command(*args); });
}

void add_report_command(CLI::App& app) {
  auto runs = std::make_shared<std::vector<std::string>>();
  auto report_out = std::make_shared<std::string>("report");
  auto* report = app.add_subcommand("report", "report.html and report.md (tables, gnuplot SVG plots) of sweeps");
  report->add_option("runs", *runs, "Sweep directories")->required();
  report->add_option("--out", *report_out, "Report directory")->capture_default_str();
  auto report_force = std::make_shared<bool>(false);
  report->add_flag("--force", *report_force, "Replace the report already in --out");
  report->callback([runs, report_out, report_force] {
    namespace fs = std::filesystem;
    for (const char* existing : {"report.html", "report.md"})
      if (!*report_force && fs::exists(fs::path(*report_out) / existing))
        throw Error(*report_out + " already holds a report (" + existing + "): use --force to replace it, or another --out");
    const auto r = reports::write_report(*runs, *report_out);
    for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::printf("report: %s\n        %s\n", r.html.c_str(), r.markdown.c_str());
  });
}

void add_run_command(CLI::App& app) {
  auto run_config = std::make_shared<std::string>();
  auto run_out = std::make_shared<std::string>("runs/quickstart");
  auto* run = app.add_subcommand("run", "Train then evaluate and report in one command (default: the built-in quickstart)");
  run->add_option("config", *run_config, "Sweep file (default: the quickstart, configs/quickstart.toml)");
  run->add_option("--out", *run_out, "Sweep directory; the report goes to OUT/report")->capture_default_str();
  run->callback([run_config, run_out] {
    const auto config = load_config(*run_config);
    std::printf("modiff run: %s sweep into %s\n", config.name.c_str(), run_out->c_str());
    std::fflush(stdout);
    const auto p = sweeps::run_sweep(config, *run_out);
    print_progress(p, *run_out);
    const auto r = reports::write_report({*run_out}, (std::filesystem::path(*run_out) / "report").string());
    for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
    std::printf("report: %s\n        %s\n", r.html.c_str(), r.markdown.c_str());
  });
}

}  // namespace

void add_sweep_commands(CLI::App& app) {
  add_sweep_command(app);
  add_report_command(app);
  add_run_command(app);
}

}  // namespace modiff::cli
