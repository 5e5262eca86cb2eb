// Sweeps and reports: the grid, shards covering it exactly once, a sweep killed
// with SIGKILL and rerun ending as an uninterrupted one, the report of a tiny
// sweep with every section and valid SVG, and the same report without gnuplot.
#include <signal.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "cli_runner.h"
#include "skip.h"
#include "modiff/common/remove_tree.h"
#include "modiff/common/spawn.h"
#include "modiff/sweeps/cell_record.h"
#include "modiff/sweeps/sweep.h"

using namespace modiff;
namespace fs = std::filesystem;

namespace {

std::string tiny_sweep_toml(const std::string& data) {
  return "name = \"tiny\"\ndatasets = [\"" + data +
         "\"]\nalgos = [\"idql\", \"dql\"]\nschedules = [\"joint\", \"guidance-first\"]\nseeds = [0, 1]\n"
         "steps = 20\nguidance_steps = 20\ndevice = \"cpu\"\nlog_every = 10\n"
         "[network]\nhidden = 16\nblock_width = 32\nbatch = 32\n"
         "[eval]\nseeds = \"0-1\"\nepisodes = 1\ncandidates = 4\nbootstrap_reps = 100\nevery = 10\nevery_episodes = 1\n"
         "[swaps]\nseeds = true\ncross_algorithm = [[\"idql\", \"dql\"]]\n";
}

// Every finished cell's score, by id.
std::map<std::string, double> scores(const fs::path& sweep) {
  std::map<std::string, double> out;
  for (const auto& e : fs::directory_iterator(sweep / "cells"))
    if (fs::exists(e.path() / "DONE"))
      out[e.path().filename().string()] =
          nlohmann::json::parse(modiff_test::slurp((e.path() / "DONE").string())).at("score").get<double>();
  return out;
}

}  // namespace

TEST_CASE("sweep files: the grid, errors, and the shipped configs", "[sweep]") {
  const auto c = sweeps::parse_sweep_config(tiny_sweep_toml("x.hdf5"), "tiny.toml");
  const auto cells = sweeps::plan_cells(c);
  // 2 algos x 2 schedules x 2 seeds trainings; 2 x 2 x 2 seed swaps; 2 schedules x 2 seeds IDQL-to-DQL swaps.
  CHECK(cells.size() == 8 + 8 + 4);
  std::set<std::string> ids;
  for (const auto& cell : cells) ids.insert(cell.id);
  CHECK(ids.size() == cells.size());
  CHECK_THROWS_WITH(sweeps::parse_sweep_config("datasets = [\"a\"]\nstep = 3\n", "bad.toml"),
                    Catch::Contains("bad.toml: unknown key 'step'"));
  CHECK_THROWS_WITH(sweeps::parse_sweep_config("datasets = [\"a\"]\nalgos = [\"sac\"]\n", "bad.toml"),
                    Catch::Contains("unknown algorithm 'sac'"));
  CHECK_THROWS_WITH(sweeps::parse_sweep_config("datasets = [\"a\"\n", "broken.toml"), Catch::Contains("broken.toml"));
  // configs/quickstart.toml is the built-in default; configs/paper.toml is the paper's grid.
  const std::string root = fs::path(MODIFF_TEST_DATA_DIR).parent_path().parent_path().string();
  const auto shipped = sweeps::parse_sweep_config(modiff_test::slurp(root + "/configs/quickstart.toml"), "quickstart");
  const auto builtin = sweeps::parse_sweep_config(sweeps::default_sweep_toml(), "built-in");
  CHECK(sweeps::plan_cells(shipped).size() == sweeps::plan_cells(builtin).size());
  CHECK(shipped.steps == builtin.steps);
  const auto paper = sweeps::parse_sweep_config(modiff_test::slurp(root + "/configs/paper.toml"), "paper");
  CHECK(paper.datasets.size() == 12);
  CHECK(sweeps::plan_cells(paper).size() == 4 * 3 * 2 * 2 * 5 + 12 * 2 * 2 * 20 + 12 * 2 * 5);
}

TEST_CASE("sweeps: shards cover the grid once, a killed sweep finishes on rerun", "[sweep][cli]") {
  const fs::path dir = fs::temp_directory_path() / ("modiff_sweep_" + std::to_string(::getpid()));
  remove_tree(dir.string());
  fs::create_directories(dir);
  const std::string data = (dir / "hopper.hdf5").string();
  REQUIRE(modiff_test::modiff("data build bullet-hopper-random-v0 --transitions 2000 --num-envs 4 --out " + data).code == 0);
  const std::string config = (dir / "tiny.toml").string();
  std::ofstream(config) << tiny_sweep_toml(data);

  // Uninterrupted.
  const auto whole = modiff_test::modiff("sweep " + config + " --out " + (dir / "whole").string() + " --json");
  INFO(whole.err);
  REQUIRE(whole.code == 0);
  CHECK(nlohmann::json::parse(whole.out).at("finished") == 20);
  const auto reference = scores(dir / "whole");
  REQUIRE(reference.size() == 20);
  // Rerunning does nothing: every cell skipped, no file of the sweep touched (a retraining would rewrite its
  // weights and metrics, whose step times differ).
  auto sweep_files = [](const fs::path& sweep) {
    std::map<std::string, std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(sweep))
      if (e.is_regular_file()) files[e.path().string()] = modiff_test::slurp(e.path().string());
    return files;
  };
  const auto files_before = sweep_files(dir / "whole");
  CHECK(nlohmann::json::parse(modiff_test::modiff("sweep " + config + " --out " + (dir / "whole").string() + " --json").out)
            .at("skipped") == 20);
  CHECK(sweep_files(dir / "whole") == files_before);

  // Train cells trained in groups, side by side in one process (the default on CUDA): the same runs, bit for bit,
  // and the same scores.
  const auto grouped = modiff_test::modiff("sweep " + config + " --group-runs 3 --out " + (dir / "grouped").string());
  INFO(grouped.err);
  REQUIRE(grouped.code == 0);
  CHECK(grouped.err.find("training 2 runs together") != std::string::npos);  // 2 seeds per algorithm x schedule
  CHECK(scores(dir / "grouped") == reference);
  for (const auto& e : fs::directory_iterator(dir / "whole" / "cells")) {
    const fs::path weights = e.path() / "run" / "diffusion" / "weights.pt";
    if (!fs::exists(weights)) continue;
    INFO(e.path().filename().string());
    CHECK(modiff_test::slurp(weights.string()) ==
          modiff_test::slurp((dir / "grouped" / "cells" / e.path().filename() / "run" / "diffusion" / "weights.pt").string()));
  }

  // Two shards: each cell runs in exactly one; swap cells wait for the other shard's trainings.
  const std::string sharded = (dir / "sharded").string();
  const auto s1 = nlohmann::json::parse(modiff_test::modiff("sweep " + config + " --shard 1/2 --json --out " + sharded).out);
  {
    // Shard 1 of 2 owns the cells at even places of the plan: it finished every training among them and nothing
    // outside them.
    const auto plan = sweeps::plan_cells(sweeps::parse_sweep_config(tiny_sweep_toml(data), "tiny.toml"));
    const auto done = scores(sharded);
    for (size_t i = 0; i < plan.size(); ++i) {
      INFO(plan[i].id);
      if (i % 2 == 1) CHECK(done.count(plan[i].id) == 0);
      else if (plan[i].kind == "train") CHECK(done.count(plan[i].id) == 1);
    }
    CHECK(static_cast<int>(done.size()) == s1.at("finished").get<int>());
  }
  const auto s2 = nlohmann::json::parse(modiff_test::modiff("sweep " + config + " --shard 2/2 --json --out " + sharded).out);
  CHECK(s1.at("finished").get<int>() + s1.at("waiting").get<int>() + s2.at("finished").get<int>() +
            s2.at("waiting").get<int>() == 20);
  const auto again = nlohmann::json::parse(modiff_test::modiff("sweep " + config + " --shard 1/2 --json --out " + sharded).out);
  CHECK(again.at("waiting") == 0);
  CHECK(scores(sharded) == reference);
  CHECK(modiff_test::modiff("sweep " + config + " --shard 3/2 --out " + sharded).code != 0);

  // Killed with SIGKILL part-way, then rerun: the same results as the uninterrupted sweep.
  const fs::path cut = dir / "cut";
  const std::string pid_file = (dir / "pid").string();
  REQUIRE(std::system((std::string(MODIFF_BINARY) + " sweep " + config + " --out " + cut.string() +
                       " >/dev/null 2>&1 & echo $! > " + pid_file).c_str()) == 0);
  const pid_t pid = std::stoi(modiff_test::slurp(pid_file));
  for (int i = 0; i < 20000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (fs::exists(cut / "cells") && scores(cut).size() >= 3) break;
  }
  ::kill(pid, SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(scores(cut).size() < 20);
  REQUIRE(modiff_test::modiff("sweep " + config + " --out " + cut.string()).code == 0);
  CHECK(scores(cut) == reference);

  remove_tree(dir.string());
}

namespace {

// The tiny sweep of the case above, finished, in a folder of its own (removed at the end of the case).
struct FinishedTinySweep {
  fs::path dir, sweep;
  explicit FinishedTinySweep(const std::string& name)
      : dir(fs::temp_directory_path() / ("modiff_" + name + "_" + std::to_string(::getpid()))), sweep(dir / "sweep") {
    remove_tree(dir.string());
    fs::create_directories(dir);
    const std::string data = (dir / "hopper.hdf5").string();
    REQUIRE(modiff_test::modiff("data build bullet-hopper-random-v0 --transitions 2000 --num-envs 4 --out " + data).code == 0);
    std::ofstream((dir / "tiny.toml").string()) << tiny_sweep_toml(data);
    REQUIRE(modiff_test::modiff("sweep " + (dir / "tiny.toml").string() + " --out " + sweep.string()).code == 0);
  }
  ~FinishedTinySweep() { remove_tree(dir.string()); }
};

const char* const kReportSections[] = {"Normalized scores per configuration", "Learning curves", "Guidance swaps",
                                       "Cross-algorithm swaps", "Joint against guidance-first"};
const char* const kReportTables[] = {"scores.csv", "swap_iqr.csv", "cross_algorithm.csv", "timing.csv"};

}  // namespace

TEST_CASE("report: every section, its tables and SVG plots, and folder names that a shell would run stay text",
          "[sweep][report][cli]") {
  if (modiff::find_program("gnuplot").empty()) MODIFF_SKIP("gnuplot is not installed (scripts/setup-deps installs it)");
  const FinishedTinySweep t("report_plots");
  // The report's folder name holds what a shell or gnuplot would run (modiff starts gnuplot without a shell and
  // quotes every path in its scripts).
  const std::string report = (t.dir / "o'brien $(touch pwned1) `touch pwned2` ';system('touch pwned3')").string();
  const auto r = modiff_test::modiff("report " + t.sweep.string() + " --out " + modiff_test::quoted(report));
  INFO(r.err);
  REQUIRE(r.code == 0);
  for (const char* pwned : {"pwned1", "pwned2", "pwned3"}) {
    CHECK_FALSE(fs::exists(pwned));
    CHECK_FALSE(fs::exists(t.dir / pwned));
    CHECK_FALSE(fs::exists(fs::path(report) / "plots" / pwned));
  }
  const std::string md = modiff_test::slurp(report + "/report.md"), html = modiff_test::slurp(report + "/report.html");
  for (const char* section : kReportSections) {
    CHECK(md.find(section) != std::string::npos);
    CHECK(html.find(section) != std::string::npos);
  }
  CHECK(md.find("gnuplot was not found") == std::string::npos);
  CHECK(html.find("<svg") != std::string::npos);
  int svgs = 0;
  for (const auto& e : fs::directory_iterator(report + "/plots")) {
    if (e.path().extension() != ".svg") continue;
    ++svgs;
    CHECK(run_program({"/usr/bin/python3", "-c", "import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])",
                       e.path().string()})
              .exit_code == 0);
  }
  CHECK(svgs == 1 + 1 + 4 + 1);  // box plot, curves, four swap matrices, timing
  for (const char* csv : kReportTables) CHECK(fs::exists(report + "/" + csv));
}

TEST_CASE("report without gnuplot: every section and table, no plots, and a line saying so", "[sweep][report][cli]") {
  const FinishedTinySweep t("report_tables");
  // modiff finds gnuplot on PATH: a PATH of one empty folder hides it.
  const fs::path empty = t.dir / "empty-path";
  fs::create_directories(empty);
  const std::string report = (t.dir / "report").string();
  const std::string saved_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", empty.c_str(), 1);
  modiff::SpawnOptions files;
  files.stderr_file = (t.dir / "stderr.txt").string();
  files.capture_stdout = true;
  const auto r = run_program({MODIFF_BINARY, "report", t.sweep.string(), "--out", report}, files);
  ::setenv("PATH", saved_path.c_str(), 1);
  INFO(modiff_test::slurp(files.stderr_file));
  REQUIRE(r.exit_code == 0);
  CHECK(modiff_test::slurp(files.stderr_file).find("gnuplot not found") != std::string::npos);
  const std::string md = modiff_test::slurp(report + "/report.md"), html = modiff_test::slurp(report + "/report.html");
  CHECK(md.find("gnuplot was not found: this report has tables only.") != std::string::npos);
  for (const char* section : kReportSections) {
    CHECK(md.find(section) != std::string::npos);
    CHECK(html.find(section) != std::string::npos);
  }
  CHECK(html.find("<svg") == std::string::npos);
  for (const char* csv : kReportTables) CHECK(fs::exists(report + "/" + csv));
  for (const auto& e : fs::recursive_directory_iterator(report)) CHECK(e.path().extension() != ".svg");
}

namespace {

// A folder with a small hopper dataset and a one-algorithm, one-schedule grid over `seeds` on it (20 CPU steps
// of small networks), evaluated on the evaluation seeds `eval_seeds`; removed at the end of the case.
struct SmallGrid {
  fs::path dir;
  std::string config;
  SmallGrid(const std::string& name, const std::string& seeds, const std::string& eval_seeds)
      : dir(fs::temp_directory_path() / ("modiff_" + name + "_" + std::to_string(::getpid()))) {
    remove_tree(dir.string());
    fs::create_directories(dir);
    const std::string data = (dir / "hopper.hdf5").string();
    REQUIRE(modiff_test::modiff("data build bullet-hopper-random-v0 --transitions 2000 --num-envs 4 --out " + data).code == 0);
    config = (dir / (name + ".toml")).string();
    std::ofstream(config) << "name = \"" + name + "\"\ndatasets = [\"" + data +
                                 "\"]\nalgos = [\"idql\"]\nschedules = [\"joint\"]\nseeds = [" + seeds +
                                 "]\nsteps = 20\ndevice = \"cpu\"\nlog_every = 10\n"
                                 "[network]\nhidden = 16\nblock_width = 32\nbatch = 32\n"
                                 "[eval]\nseeds = \"" + eval_seeds + "\"\nepisodes = 1\ncandidates = 2\nbootstrap_reps = 10\n";
  }
  ~SmallGrid() { remove_tree(dir.string()); }
};

}  // namespace

TEST_CASE("sweeps over mpirun -n 2: one shard per rank, the same scores as one process", "[sweep][cli][mpi]") {
  if (modiff::find_program("mpirun").empty()) MODIFF_SKIP("Open MPI's mpirun is not installed (scripts/setup-deps installs it)");
  const SmallGrid grid("mpi", "0, 1", "0");
  const fs::path& dir = grid.dir;
  const std::string& config = grid.config;
  REQUIRE(modiff_test::modiff("sweep " + config + " --out " + (dir / "one").string()).code == 0);
  // Rank 0 finishes the swap cells that waited for rank 1's trainings.
  const std::string log = (dir / "mpi.log").string();
  modiff::SpawnOptions o;
  o.stdout_file = log;
  o.stderr_file = log + ".err";
  const auto r = run_program({"mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2", MODIFF_BINARY, "sweep", config,
                              "--out", (dir / "mpi").string()}, o);
  INFO(modiff_test::slurp(log) + modiff_test::slurp(log + ".err"));
  CHECK(r.exit_code == 0);
  CHECK(scores(dir / "mpi").size() == 4);
  CHECK(scores(dir / "mpi") == scores(dir / "one"));
}

namespace {

double q7(std::vector<double> v, double q) {  // type-7 quantile, written here
  std::sort(v.begin(), v.end());
  const double h = (v.size() - 1) * q;
  const size_t i = static_cast<size_t>(h);
  return i + 1 < v.size() ? v[i] + (h - i) * (v[i + 1] - v[i]) : v[i];
}

// The rows of a report CSV (no quoted commas in these tables) as maps from column name to text.
std::vector<std::map<std::string, std::string>> csv_rows(const std::string& path) {
  std::istringstream in(modiff_test::slurp(path));
  auto split = [](const std::string& line) {
    std::vector<std::string> out;
    std::stringstream s(line);
    for (std::string f; std::getline(s, f, ',');) out.push_back(f);
    return out;
  };
  std::string line;
  std::getline(in, line);
  const auto header = split(line);
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    const auto fields = split(line);
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < header.size() && i < fields.size(); ++i) row[header[i]] = fields[i];
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

TEST_CASE("cli: modiff run CONFIG trains, evaluates and reports, and the report's values are its cells'", "[sweep][cli]") {
  const SmallGrid grid("run", "0, 1, 2", "0-1");
  const fs::path& dir = grid.dir;
  const std::string& config = grid.config;
  const std::string out = (dir / "out").string();
  const auto r = modiff_test::modiff("run " + config + " --out " + out);
  INFO(r.err);
  REQUIRE(r.code == 0);
  // Three trainings and their six seed swaps, every one finished.
  const auto plan = sweeps::plan_cells(sweeps::parse_sweep_config(modiff_test::slurp(config), "run.toml"));
  REQUIRE(plan.size() == 9);
  std::map<std::pair<uint64_t, uint64_t>, double> score;  // (policy seed, guidance seed) -> the cell's score
  std::vector<double> own, unguided, swapped;
  for (const auto& c : plan) {
    const auto done = nlohmann::json::parse(modiff_test::slurp((fs::path(out) / "cells" / c.id / "DONE").string()));
    const double s = done.at("score");
    const std::string g = c.kind == "train" ? c.id : c.guidance_cell;
    score[{c.seed, std::stoull(g.substr(g.rfind("-s") + 2))}] = s;
    if (c.kind == "train") {
      own.push_back(s);
      unguided.push_back(done.at("score_unguided"));
    } else {
      swapped.push_back(s);
    }
  }
  CHECK(r.out.find("9 cells ran") != std::string::npos);
  // scores.csv: the medians, IQRs and means of the cells' scores, with and without guidance (one decimal).
  const auto scores = csv_rows(out + "/report/scores.csv");
  REQUIRE(scores.size() == 2);
  for (const auto& row : scores) {
    const auto& v = row.at("guidance") == "own" ? own : unguided;
    INFO(row.at("guidance"));
    CHECK(row.at("seeds") == "3");
    CHECK(std::stod(row.at("median")) == Approx(q7(v, 0.5)).margin(0.051));
    CHECK(std::stod(row.at("IQR")) == Approx(q7(v, 0.75) - q7(v, 0.25)).margin(0.051));
    CHECK(std::stod(row.at("mean")) == Approx((v[0] + v[1] + v[2]) / 3).margin(0.051));
  }
  // swap_iqr.csv: own guidance against all seed swaps.
  const auto change = csv_rows(out + "/report/swap_iqr.csv");
  REQUIRE(change.size() == 1);
  const double own_iqr = q7(own, 0.75) - q7(own, 0.25), swap_iqr = q7(swapped, 0.75) - q7(swapped, 0.25);
  CHECK(std::stod(change[0].at("swapped: median")) == Approx(q7(swapped, 0.5)).margin(0.051));
  CHECK(std::stod(change[0].at("IQR change")) == Approx(100 * (swap_iqr - own_iqr) / own_iqr).margin(0.051));
  // The heatmap's data: x the guidance seed, y the policy seed (the diagonal the own guidance).
  std::istringstream heat(modiff_test::slurp(out + "/report/plots/swap0.dat"));
  int points = 0;
  for (uint64_t x, y; heat >> x >> y;) {
    double v = 0;
    heat >> v;
    CHECK(v == Approx(score.at({y, x})).margin(0.0006));
    ++points;
  }
  CHECK(points == 9);
  const auto again = modiff_test::modiff("run " + config + " --out " + out);
  CHECK(again.code == 0);
  CHECK(again.out.find("0 cells ran, 9 already finished") != std::string::npos);
}

TEST_CASE("a cell record reads back as written, and a record that lacks a key is refused naming the file", "[sweep]") {
  const fs::path dir = fs::temp_directory_path() / ("modiff_cell_record_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  sweeps::CellRecord train;
  train.id = "train-hopper-medium-idql-joint-s3";
  train.kind = "train";
  train.dataset = "bullet-hopper-medium-v0";
  train.algo = "idql";
  train.schedule = "joint";
  train.seed = 3;
  train.defines = {{"kind", "train"}};
  train.guided = {{41.5, 43.0}, {{"mean", 42.25}}};
  train.score = 42.25;
  train.unguided = sweeps::EvaluationSummary{{30.0, 31.0}, {{"mean", 30.5}}};
  train.score_unguided = 30.5;
  train.run = "cells/x/run";
  const std::string file = (dir / "DONE").string();
  std::ofstream(file) << nlohmann::json(train).dump(1);
  const auto back = sweeps::read_cell_record(file);
  CHECK(back.id == train.id);
  CHECK(back.seed == 3);
  CHECK(back.guided.per_seed == train.guided.per_seed);
  CHECK(back.unguided->aggregate == train.unguided->aggregate);
  CHECK(*back.score_unguided == 30.5);
  CHECK(back.run == train.run);
  // A swap record has no unguided part; a train record without one is incomplete.
  auto swap = nlohmann::json(train);
  swap["kind"] = "swap";
  swap.erase("unguided");
  swap.erase("score_unguided");
  std::ofstream(file) << swap.dump();
  CHECK_FALSE(sweeps::read_cell_record(file).unguided.has_value());
  swap["kind"] = "train";
  std::ofstream(file) << swap.dump();
  CHECK_THROWS_WITH(sweeps::read_cell_record(file), Catch::Contains(file + ": not a cell record"));
  std::ofstream(file) << "{\"id\": ";
  CHECK_THROWS_WITH(sweeps::read_cell_record(file), Catch::Contains(file + ": not valid JSON"));
  modiff::remove_tree(dir.string());
}

TEST_CASE("a sweep's hyperparameters table reaches every cell's run, checked before any cell runs", "[sweep]") {
  const std::string base = "datasets = [\"d.hdf5\"]\nalgos = [\"idql\", \"dql\"]\n";
  const auto c = sweeps::parse_sweep_config(
      base + "[hyperparameters]\nbatch = 64\n\"policy.lr\" = 0.0005\n[hyperparameters.dql]\neta = 0.5\n"
             "\"policy.select\" = \"argmax\"\n",
      "h.toml");
  CHECK(c.hyperparameters.at("") == std::vector<std::string>{"batch=64", "policy.lr=0.0005"});
  CHECK(c.hyperparameters.at("dql") == std::vector<std::string>{"eta=0.5", "policy.select=argmax"});
  // A name one of the grid's algorithms does not have, a value outside its range, a table for an algorithm
  // outside the grid, a value of no usable type: one error naming it, before anything runs.
  const std::pair<std::string, std::string> bad[] = {
      {"[hyperparameters]\neta = 0.5\n", "hyperparameters for idql: idql with iql guidance has no hyperparameter 'eta'"},
      {"[hyperparameters.dql]\n\"policy.ema_rate\" = 2.0\n", "hyperparameters for dql: policy.ema_rate=2.0: must be in (0, 1]"},
      {"[hyperparameters.cfg]\nbatch = 8\n", "[hyperparameters.cfg]: 'cfg' is not one of the sweep's algos"},
      {"[hyperparameters]\nbatch = [1, 2]\n", "hyperparameters.batch must be a number, true/false or a string"},
      {"hyperparameters = 3\n", "hyperparameters must be a table"},
  };
  for (const auto& [text, expected] : bad) {
    INFO(text);
    CHECK_THROWS_WITH(sweeps::parse_sweep_config(base + text, "h.toml"), Catch::Contains("h.toml: " + expected));
  }

  // Through a real (one-cell) sweep: the run's manifest holds the values, the cell's definition names them.
  const fs::path dir = fs::temp_directory_path() / ("modiff_sweep_hp_" + std::to_string(::getpid()));
  remove_tree(dir.string());
  fs::create_directories(dir);
  const std::string data = (dir / "hopper.hdf5").string();
  REQUIRE(modiff_test::modiff("data build bullet-hopper-random-v0 --transitions 1000 --num-envs 2 --out " + data).code == 0);
  const std::string config = (dir / "h.toml").string();
  std::ofstream(config) << "datasets = [\"" + data +
                               "\"]\nalgos = [\"dql\"]\nschedules = [\"joint\"]\nseeds = [0]\nsteps = 10\n"
                               "device = \"cpu\"\nlog_every = 5\n[network]\nhidden = 16\nbatch = 32\n"
                               "[hyperparameters.dql]\neta = 0.25\n\"policy.candidates\" = 3\n"
                               "[eval]\nseeds = \"0\"\nepisodes = 1\nbootstrap_reps = 100\n"
                               "[swaps]\nseeds = false\n";
  const auto r = modiff_test::modiff("sweep " + config + " --out " + (dir / "out").string() + " --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  const fs::path cell = dir / "out" / "cells" / "train-hopper-dql-joint-s0";
  INFO(cell.string());
  const auto manifest = nlohmann::json::parse(modiff_test::slurp((cell / "run" / "diffusion" / "manifest.json").string()));
  CHECK(manifest.at("eta") == 0.25);
  CHECK(manifest.at("hyperparameters").at("candidates") == 3);
  CHECK(manifest.at("training").at("batch") == 32);
  const auto definition = nlohmann::json::parse(modiff_test::slurp((cell / "cell.json").string()));
  CHECK(definition.at("train").at("hyperparameters").dump().find("eta=0.25") != std::string::npos);
  remove_tree(dir.string());
}
