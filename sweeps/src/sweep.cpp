#include "modiff/sweeps/sweep.h"
#include "modiff/sweeps/cell_record.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "modiff/behavior/behavior_suite.h"
#include "modiff/agents/train.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/common/json_difference.h"
#include "modiff/common/file_lock.h"
#include "modiff/common/paths.h"
#include "modiff/common/remove_tree.h"
#include "modiff/datasets/data_home.h"
#include "modiff/datasets/sha256.h"
#include "modiff/eval/evaluate.h"
#include "modiff/torch/device.h"

namespace modiff::sweeps {

namespace fs = std::filesystem;

const char* default_sweep_toml() {
  return R"(# The quickstart: a small bullet-hopper-medium dataset, IDQL and DQL, joint and
# guidance-first, two training seeds, evaluation with guidance, without, and
# swapped (the other seed's guidance; IDQL's guidance driving DQL policies),
# learning curves with and without guidance. Guidance-first trains its guidance
# longer (the module is cheap alone) before freezing it. Sized for a 2-core CPU
# in under ten minutes; a GPU and larger numbers run the real thing
# (configs/paper.toml).
name = "quickstart"
datasets = ["bullet-hopper-medium-v0"]
dataset_transitions = 50000
algos = ["idql", "dql"]
schedules = ["joint", "guidance-first"]
seeds = [0, 1]
steps = 3000
guidance_steps = 10000
device = "auto"
log_every = 500

[network]
hidden = 64
block_width = 128
batch = 128
ema_rate = 0.01

[eval]
seeds = "0-2"
episodes = 1
candidates = 8
bootstrap_reps = 2000
every = 1000
every_episodes = 1

[swaps]
seeds = true
cross_algorithm = [["idql", "dql"]]
)";
}

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what) { throw Error(where + ": " + what); }

// The hyperparameter overrides of a cell's run: the [network] table (its values of 0: not given), then
// [hyperparameters] for every algorithm, then for this one.
std::vector<std::string> cell_overrides(const SweepConfig& c, const std::string& algo) {
  std::vector<std::string> set;
  auto add = [&](auto value, std::initializer_list<const char*> names) {
    if (value > 0)
      for (const char* name : names) set.push_back(std::string(name) + "=" + nlohmann::json(value).dump());
  };
  add(c.batch, {"batch"});
  add(c.hidden, {"policy.hidden", "guidance.hidden"});
  add(c.block_width, {"policy.block_width"});
  add(c.ema_rate, {"policy.ema_rate"});
  for (const char* scope : {"", algo.c_str()}) {
    const auto it = c.hyperparameters.find(scope);
    if (it != c.hyperparameters.end()) set.insert(set.end(), it->second.begin(), it->second.end());
  }
  return set;
}

void check_keys(const toml::table& t, const std::set<std::string>& allowed, const std::string& where,
                const std::string& table) {
  for (const auto& [k, v] : t) {
    const std::string key(k.str());
    if (!allowed.count(key)) bad(where, "unknown key '" + (table.empty() ? key : table + "." + key) + "'");
  }
}

std::vector<std::string> strings(const toml::table& t, const char* key, const std::string& where,
                                 std::vector<std::string> fallback) {
  const auto* node = t.get(key);
  if (!node) return fallback;
  const auto* arr = node->as_array();
  if (!arr) bad(where, std::string(key) + " must be an array of strings");
  std::vector<std::string> out;
  for (const auto& e : *arr) {
    const auto v = e.value<std::string>();
    if (!v) bad(where, std::string(key) + " must be an array of strings");
    out.push_back(*v);
  }
  return out;
}

template <typename T>
T number(const toml::table& t, const char* key, const std::string& where, T fallback) {
  const auto* node = t.get(key);
  if (!node) return fallback;
  if (const auto v = node->value_exact<T>()) return *v;
  if constexpr (std::is_same_v<T, double>)
    if (const auto v = node->value_exact<int64_t>()) return static_cast<double>(*v);
  bad(where, std::string(key) + " has the wrong type");
}

// An integer key within [lo, hi]; a key that is not there keeps `fallback` (which need not be in range: 0 says
// "the algorithm's default").
int64_t integer(const toml::table& t, const char* key, const std::string& where, int64_t fallback, int64_t lo,
                int64_t hi, const std::string& table = "") {
  if (!t.get(key)) return fallback;
  const int64_t v = number<int64_t>(t, key, where, fallback);
  const std::string name = table.empty() ? key : table + "." + key;
  if (v < lo || v > hi)
    bad(where, name + " = " + std::to_string(v) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
  return v;
}

std::vector<uint64_t> seed_values(const toml::table& t, const char* key, const std::string& where,
                                  std::vector<uint64_t> fallback) {
  const auto* node = t.get(key);
  if (!node) return fallback;
  if (const auto s = node->value<std::string>()) {
    try {
      return eval::parse_seed_list(*s);
    } catch (const Error& e) {
      bad(where, std::string(key) + ": " + e.what());
    }
  }
  const auto* arr = node->as_array();
  if (!arr) bad(where, std::string(key) + " must be an array of seeds or a string like \"0-4\"");
  std::vector<uint64_t> out;
  for (const auto& e : *arr) {
    const auto v = e.value_exact<int64_t>();
    if (!v || *v < 0) bad(where, std::string(key) + " must hold non-negative integers");
    out.push_back(static_cast<uint64_t>(*v));
  }
  if (out.empty()) bad(where, std::string(key) + " is empty");
  return out;
}

// A list whose entries name cells or folders: not empty, none twice.
template <typename T>
void check_list(const std::vector<T>& values, const std::string& key, const std::string& where) {
  if (values.empty()) bad(where, key + " is empty: name at least one");
  std::set<T> seen;
  for (const auto& v : values) {
    if (seen.insert(v).second) continue;
    std::ostringstream s;
    s << v;
    bad(where, key + " names '" + s.str() + "' twice");
  }
}

std::string short_name(const std::string& dataset) {
  std::string s = fs::path(dataset).stem().string();
  if (s.rfind("bullet-", 0) == 0) s = s.substr(7);
  if (s.size() > 3 && s.compare(s.size() - 3, 3, "-v0") == 0) s = s.substr(0, s.size() - 3);
  return s;
}

std::string train_id(const std::string& dataset, const std::string& algo, const std::string& schedule, uint64_t seed) {
  return "train-" + short_name(dataset) + "-" + algo + "-" + schedule + "-s" + std::to_string(seed);
}

// Sweep files are ASCII. Every value they hold is a plain name or a number, and the fuzzer found that the TOML
// parser Debian 12 ships (toml++ 3.3.0) classifies some non-ASCII characters (U+00A1, U+FE00, ...) through a
// path that is undefined behaviour; refusing them here keeps such bytes away from it.
void check_ascii(const std::string& text, const std::string& where) {
  int line = 1, column = 1;
  for (unsigned char ch : text) {
    if (ch >= 0x80)
      bad(where, "line " + std::to_string(line) + ", column " + std::to_string(column) +
                     ": a non-ASCII character (sweep files are ASCII)");
    ch == '\n' ? (++line, column = 1) : ++column;
  }
}

const std::set<std::string> kSchedules = {"joint", "guidance-first"};

// Every dataset becomes part of cell ids (and folder names): each must give a distinct, plain name.
void check_datasets(const SweepConfig& c, const std::string& where) {
  check_list(c.datasets, "datasets", where);
  std::map<std::string, std::string> by_short;
  for (const auto& d : c.datasets) {
    const std::string s = short_name(d);
    if (!is_path_name(s, 100))
      bad(where, "datasets: '" + d + "' gives the cell name '" + s +
                     "'; dataset file names may hold only letters, digits, '.', '_' and '-'");
    const auto [it, fresh] = by_short.emplace(s, d);
    if (!fresh) bad(where, "datasets: '" + it->second + "' and '" + d + "' both give cells named '" + s + "'; rename one file");
  }
}

// The number of cells, checked against a limit before any cell is planned.
void check_grid_size(const SweepConfig& c, const std::string& where) {
  const double n = static_cast<double>(c.seeds.size()), per_dataset_schedule =
      c.algos.size() * n + (c.seed_swaps ? c.algos.size() * n * (n - 1) : 0) + c.cross_algorithm.size() * n;
  const double cells = c.datasets.size() * c.schedules.size() * per_dataset_schedule;
  if (cells > kMaxSweepCells)
    bad(where, "the grid has " + std::to_string(static_cast<long long>(cells)) + " cells; at most " +
                   std::to_string(kMaxSweepCells) + " are allowed");
}

// A TOML value as the text `--set NAME=VALUE` takes.
std::string override_text(const toml::node& value, const std::string& where, const std::string& key) {
  if (auto v = value.as_integer()) return std::to_string(v->get());
  if (auto v = value.as_floating_point()) return nlohmann::json(v->get()).dump();
  if (auto v = value.as_boolean()) return v->get() ? "true" : "false";
  if (auto v = value.as_string()) return v->get();
  bad(where, key + " must be a number, true/false or a string");
}

// [hyperparameters] (every algorithm) and [hyperparameters.A] (algorithm A): checked against each algorithm's
// table here, so that a name or value it refuses stops the sweep before any cell runs.
void read_hyperparameters(const toml::table& root, SweepConfig& c, const std::string& where) {
  const auto* table = root["hyperparameters"].as_table();
  if (!table) {
    if (root.get("hyperparameters")) bad(where, "hyperparameters must be a table");
    return;
  }
  for (const auto& [key, value] : *table) {
    const std::string name(key.str());
    if (const auto* per_algo = value.as_table()) {
      if (std::find(c.algos.begin(), c.algos.end(), name) == c.algos.end())
        bad(where, "[hyperparameters." + name + "]: '" + name + "' is not one of the sweep's algos");
      for (const auto& [k, v] : *per_algo)
        c.hyperparameters[name].push_back(std::string(k.str()) + "=" +
                                          override_text(v, where, "hyperparameters." + name + "." + std::string(k.str())));
    } else {
      c.hyperparameters[""].push_back(name + "=" + override_text(value, where, "hyperparameters." + name));
    }
  }
  for (const auto& algo : c.algos) {
    try {
      agents::hyperparameters(algo, "", "", cell_overrides(c, algo));
    } catch (const Error& e) {
      bad(where, "hyperparameters for " + algo + ": " + e.what());
    }
  }
}

void read_network(const toml::table& root, SweepConfig& c, const std::string& where) {
  const auto* net = root["network"].as_table();
  if (!net) {
    if (root.get("network")) bad(where, "network must be a table");
    return;
  }
  check_keys(*net, {"hidden", "block_width", "batch", "ema_rate"}, where, "network");
  c.hidden = static_cast<int>(integer(*net, "hidden", where, 0, 1, 65536, "network"));
  c.block_width = static_cast<int>(integer(*net, "block_width", where, 0, 1, 65536, "network"));
  c.batch = static_cast<int>(integer(*net, "batch", where, 0, 1, 1 << 20, "network"));
  c.ema_rate = number<double>(*net, "ema_rate", where, 0.0);
  if (net->get("ema_rate") && !(c.ema_rate > 0 && c.ema_rate <= 1))
    bad(where, "network.ema_rate must be in (0, 1]");
}

void read_eval(const toml::table& root, SweepConfig& c, const std::string& where) {
  c.eval.device = c.device;
  const auto* ev = root["eval"].as_table();
  if (!ev) {
    if (root.get("eval")) bad(where, "eval must be a table");
    return;
  }
  check_keys(*ev, {"seeds", "episodes", "candidates", "select", "bootstrap_reps", "every", "every_episodes"}, where,
             "eval");
  c.eval.seeds = seed_values(*ev, "seeds", where, c.eval.seeds);
  check_list(c.eval.seeds, "eval.seeds", where);
  c.eval.episodes = static_cast<int>(integer(*ev, "episodes", where, c.eval.episodes, 1, 1000000, "eval"));
  c.eval.candidates = static_cast<int>(integer(*ev, "candidates", where, 0, 1, 4096, "eval"));
  c.eval.select = number<std::string>(*ev, "select", where, "");
  if (ev->get("select") && c.eval.select != "argmax" && c.eval.select != "softmax" && c.eval.select != "expectile")
    bad(where, "eval.select must be argmax, softmax or expectile, not '" + c.eval.select + "'");
  c.eval.bootstrap_reps = static_cast<int>(integer(*ev, "bootstrap_reps", where, c.eval.bootstrap_reps, 1, 10000000, "eval"));
  c.eval_every = integer(*ev, "every", where, 0, 1, kMaxSweepSteps, "eval");
  c.eval_every_episodes = static_cast<int>(integer(*ev, "every_episodes", where, c.eval_every_episodes, 1, 100000, "eval"));
}

void read_swaps(const toml::table& root, SweepConfig& c, const std::string& where) {
  const auto* sw = root["swaps"].as_table();
  if (!sw) {
    if (root.get("swaps")) bad(where, "swaps must be a table");
    return;
  }
  check_keys(*sw, {"seeds", "cross_algorithm"}, where, "swaps");
  c.seed_swaps = number<bool>(*sw, "seeds", where, true);
  const auto* node = sw->get("cross_algorithm");
  if (!node) return;
  const auto* pairs = node->as_array();
  if (!pairs) bad(where, "swaps.cross_algorithm holds pairs [\"guidance algo\", \"policy algo\"]");
  for (const auto& p : *pairs) {
    const auto* pair = p.as_array();
    if (!pair || pair->size() != 2 || !(*pair)[0].value<std::string>() || !(*pair)[1].value<std::string>())
      bad(where, "swaps.cross_algorithm holds pairs [\"guidance algo\", \"policy algo\"]");
    const std::string guide = *(*pair)[0].value<std::string>(), policy = *(*pair)[1].value<std::string>();
    for (const auto& a : {guide, policy})
      if (std::find(c.algos.begin(), c.algos.end(), a) == c.algos.end())
        bad(where, "swaps.cross_algorithm: '" + a + "' is not one of the sweep's algos");
    if (guide == policy) bad(where, "swaps.cross_algorithm: [\"" + guide + "\", \"" + policy + "\"] pairs an algorithm with itself");
    if (std::find(c.cross_algorithm.begin(), c.cross_algorithm.end(), std::make_pair(guide, policy)) != c.cross_algorithm.end())
      bad(where, "swaps.cross_algorithm names [\"" + guide + "\", \"" + policy + "\"] twice");
    c.cross_algorithm.push_back({guide, policy});
  }
}

}  // namespace

SweepConfig parse_sweep_config(const std::string& text, const std::string& where) {
  check_ascii(text, where);
  toml::table root;
  try {
    root = toml::parse(text, where);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << e.description() << " (line " << e.source().begin.line << ")";
    bad(where, msg.str());
  }
  check_keys(root,
             {"name", "datasets", "dataset_transitions", "algos", "schedules", "seeds", "steps", "guidance_steps",
              "device", "log_every", "network", "hyperparameters", "eval", "swaps"},
             where, "");
  SweepConfig c;
  c.name = number<std::string>(root, "name", where, c.name);
  c.datasets = strings(root, "datasets", where, {});
  check_datasets(c, where);
  c.dataset_transitions = integer(root, "dataset_transitions", where, 0, 1000, 100000000);
  c.algos = strings(root, "algos", where, c.algos);
  check_list(c.algos, "algos", where);
  const std::vector<std::string> algorithms = agents::algorithm_names();  // the registry (algos/algorithm.cpp)
  for (const auto& a : c.algos)
    if (std::find(algorithms.begin(), algorithms.end(), a) == algorithms.end())
      bad(where, "algos: unknown algorithm '" + a + "' (idql, dql or cfg)");
  c.schedules = strings(root, "schedules", where, c.schedules);
  check_list(c.schedules, "schedules", where);
  for (const auto& s : c.schedules)
    if (!kSchedules.count(s)) bad(where, "schedules: unknown schedule '" + s + "' (joint or guidance-first)");
  c.seeds = seed_values(root, "seeds", where, c.seeds);
  check_list(c.seeds, "seeds", where);
  c.steps = integer(root, "steps", where, c.steps, 1, kMaxSweepSteps);
  c.guidance_steps = integer(root, "guidance_steps", where, -1, 1, kMaxSweepSteps);
  c.device = number<std::string>(root, "device", where, c.device);
  if (c.device != "auto" && c.device != "cpu" && c.device != "cuda")
    bad(where, "device must be auto, cpu or cuda, not '" + c.device + "'");
  c.log_every = integer(root, "log_every", where, c.log_every, 1, kMaxSweepSteps);
  read_network(root, c, where);
  read_hyperparameters(root, c, where);
  read_eval(root, c, where);
  read_swaps(root, c, where);
  check_grid_size(c, where);
  return c;
}

std::vector<SweepCell> plan_cells(const SweepConfig& c) {
  std::vector<SweepCell> cells;
  for (const auto& d : c.datasets)
    for (const auto& a : c.algos)
      for (const auto& s : c.schedules)
        for (uint64_t seed : c.seeds) cells.push_back({train_id(d, a, s, seed), "train", d, a, s, seed, "", "", a});
  for (const auto& d : c.datasets)
    for (const auto& s : c.schedules) {
      if (c.seed_swaps)
        for (const auto& a : c.algos)
          for (uint64_t p : c.seeds)
            for (uint64_t g : c.seeds)
              if (p != g)
                cells.push_back({"swap-" + short_name(d) + "-" + a + "-" + s + "-p" + std::to_string(p) + "-g" +
                                     std::to_string(g),
                                 "swap", d, a, s, p, train_id(d, a, s, p), train_id(d, a, s, g), a});
      for (const auto& [ga, pa] : c.cross_algorithm)
        for (uint64_t seed : c.seeds)
          cells.push_back({"cross-" + short_name(d) + "-" + ga + "-guides-" + pa + "-" + s + "-s" + std::to_string(seed),
                           "swap", d, pa, s, seed, train_id(d, pa, s, seed), train_id(d, ga, s, seed), ga});
    }
  return cells;
}

namespace {

// The dataset file a sweep uses: a smaller copy of a suite dataset in OUT/data/ when dataset_transitions is set.
// Ranks and shards of one sweep may build it at the same time: the second waits for the first.
std::string sweep_dataset(const SweepConfig& c, const std::string& name, const fs::path& out, bool quiet) {
  if (c.dataset_transitions <= 0 || fs::is_regular_file(name)) return behavior::resolve_dataset(name, quiet);
  for (const auto& entry : datasets::suite()) {
    if (entry.name != name) continue;
    const fs::path file = out / "data" / (name + "-" + std::to_string(c.dataset_transitions) + ".hdf5");
    const ExclusiveLock lock(file.string() + ".lock", "dataset " + file.string(), LockWait::Wait);
    if (!fs::exists(file)) {
      if (!quiet) std::fprintf(stderr, "sweep: building %s (%ld transitions)\n", name.c_str(), c.dataset_transitions);
      behavior::SuiteBuildOptions opt;
      opt.transitions = c.dataset_transitions;
      datasets::write_d4rl_file(file.string(), behavior::build_suite_dataset(entry, opt));
    }
    return file.string();
  }
  return behavior::resolve_dataset(name, quiet);
}

EvaluationSummary evaluation_summary(const eval::Evaluation& e) { return {e.per_seed, e.json.at("aggregate")}; }

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / v.size();
}

// The files of the sweep's datasets and their sha256, resolved (and built) before the first cell runs, so that a
// missing dataset stops the sweep before any work and a cell records the data it was made from.
struct SweepData {
  std::map<std::string, std::string> file, sha256;  // by the config's dataset entry
};

SweepData resolve_sweep_data(const SweepConfig& c, const fs::path& out, bool quiet) {
  SweepData d;
  for (const auto& name : c.datasets) {
    d.file[name] = sweep_dataset(c, name, out, quiet);
    d.sha256[name] = datasets::sha256_file(d.file[name]);
  }
  return d;
}

nlohmann::json eval_definition(const eval::EvalSettings& e) {
  return {{"seeds", e.seeds}, {"episodes", e.episodes}, {"candidates", e.candidates}, {"select", e.select},
          {"bootstrap_reps", e.bootstrap_reps}};
}

// Everything that fixes a training cell's results (not the device or the shard it ran on).
nlohmann::json train_definition(const SweepConfig& c, const SweepData& data, const std::string& dataset,
                                const std::string& algo, const std::string& schedule, uint64_t seed) {
  nlohmann::json d = {{"dataset", {{"name", dataset}, {"sha256", data.sha256.at(dataset)}}},
          {"algo", algo},
          {"schedule", schedule},
          {"seed", seed},
          {"steps", c.steps},
          {"guidance_steps", schedule == "guidance-first" ? c.guidance_steps : -1},
          {"log_every", c.log_every},
          {"network", {{"hidden", c.hidden}, {"block_width", c.block_width}, {"batch", c.batch}, {"ema_rate", c.ema_rate}}},
          {"eval_during_training", {{"every", c.eval_every}, {"episodes", c.eval_every_episodes}}},
          {"eval", eval_definition(c.eval)}};
  // Only where the config has [hyperparameters]: cells made before it existed keep their definitions.
  if (!c.hyperparameters.empty()) d["hyperparameters"] = cell_overrides(c, algo);
  return d;
}

nlohmann::json cell_definition(const SweepConfig& c, const SweepData& data, const SweepCell& cell) {
  if (cell.kind == "train")
    return {{"kind", "train"}, {"train", train_definition(c, data, cell.dataset, cell.algo, cell.schedule, cell.seed)}};
  const uint64_t guidance_seed = std::stoull(cell.guidance_cell.substr(cell.guidance_cell.rfind("-s") + 2));
  return {{"kind", "swap"},
          {"policy", train_definition(c, data, cell.dataset, cell.algo, cell.schedule, cell.seed)},
          {"guidance", train_definition(c, data, cell.dataset, cell.guidance_algo, cell.schedule, guidance_seed)},
          {"eval", eval_definition(c.eval)}};
}

constexpr const char* kDefinitionFile = "cell.json";

// Before any cell runs: every cell already started under OUT must have been started with the definition the
// config gives it now. A mismatch stops the sweep naming the key, or, with redo_changed, the cell is emptied
// and redone. A missing definition (a sweep from before modiff recorded them) is adopted.
void check_cell_definitions(const std::vector<SweepCell>& cells, const std::vector<nlohmann::json>& definitions,
                            const fs::path& cells_dir, const SweepRunOptions& run) {
  for (size_t i = 0; i < cells.size(); ++i) {
    const fs::path file = cells_dir / cells[i].id / kDefinitionFile;
    if (!fs::exists(file)) continue;
    nlohmann::json was;
    try {
      std::ifstream in(file);
      in >> was;
    } catch (const std::exception&) {
      throw Error(file.string() + ": unreadable cell definition (remove the cell's folder to redo it)");
    }
    const JsonDifference difference = first_difference(was, definitions[i]);
    const std::string& key = difference.path;
    if (!difference.found()) continue;
    if (!run.redo_changed)
      throw Error("sweep: cell " + cells[i].id + " was made with " + key + " = " + difference.was.dump() +
                  ", the config now gives " + difference.now.dump() +
                  " (use another --out, or --redo-changed to redo the cells whose definition changed)");
    const auto lock = ExclusiveLock::try_acquire((cells_dir / cells[i].id / kFolderLockFile).string());
    if (!lock) throw Error("sweep: cell " + cells[i].id + " changed but another process is running it");
    for (const auto& e : fs::directory_iterator(cells_dir / cells[i].id))
      if (e.path().filename() != kFolderLockFile) remove_tree(e.path().string());
    if (!run.quiet) std::fprintf(stderr, "sweep: %s changed (%s): redoing it\n", cells[i].id.c_str(), key.c_str());
  }
}


// A train cell's run as `modiff train` would be told it: resumed where it has a checkpoint, started afresh where
// a start never reached its first one.
agents::TrainOptions train_cell_options(const SweepConfig& c, const SweepCell& cell, const fs::path& run_dir) {
  agents::TrainOptions o;
  o.algo = cell.algo;
  o.schedule = cell.schedule;
  o.steps = c.steps;
  if (cell.schedule == "guidance-first") o.guidance_steps = c.guidance_steps;
  o.seed = cell.seed;
  o.device = c.device;
  o.out = run_dir.string();
  o.quiet = true;
  o.set = cell_overrides(c, cell.algo);
  o.log_every = c.log_every;
  o.checkpoint_every = std::max(c.log_every, c.steps / 5);
  o.resume = fs::exists(run_dir / "checkpoint" / "state.json");
  o.force = !o.resume;  // a start that never reached its first checkpoint is redone
  if (c.eval_every > 0) {
    o.eval_every = c.eval_every;
    o.evaluate = eval::training_curve_evaluator(c.eval, c.eval_every_episodes);
  }
  return o;
}

bool trained(const fs::path& cell_dir) { return fs::exists(cell_dir / "run" / "diffusion" / "manifest.json"); }

CellRecord new_record(const SweepCell& cell, const nlohmann::json& definition) {
  CellRecord record;
  record.id = cell.id;
  record.kind = cell.kind;
  record.dataset = cell.dataset;
  record.algo = cell.algo;
  record.schedule = cell.schedule;
  record.seed = cell.seed;
  record.policy_cell = cell.policy_cell;
  record.guidance_cell = cell.guidance_cell;
  record.guidance_algo = cell.guidance_algo;
  record.defines = definition;
  return record;
}

// A cell's evaluations: a train cell's policy with its own guidance and without any, a swap cell's one pairing.
std::vector<eval::Pairing> cell_pairings(const SweepCell& cell, const fs::path& cells_dir) {
  if (cell.kind == "train") {
    const fs::path run_dir = cells_dir / cell.id / "run";
    return {{(run_dir / "diffusion").string(), (run_dir / "guidance").string()}, {(run_dir / "diffusion").string(), "none"}};
  }
  return {{(cells_dir / cell.policy_cell / "run" / "diffusion").string(),
           (cells_dir / cell.guidance_cell / "run" / "guidance").string()}};
}

// The cell's evaluations (as cell_pairings lists them) into its files and record.
void record_evaluations(const SweepCell& cell, const fs::path& dir, const std::vector<eval::Evaluation>& e,
                        CellRecord& record) {
  record.guided = evaluation_summary(e.at(0));
  record.score = mean_of(e.at(0).per_seed);
  if (cell.kind != "train") {
    write_text_atomically((dir / "eval.json").string(), e.at(0).json.dump(1) + "\n");
    return;
  }
  write_text_atomically((dir / "guided.json").string(), e.at(0).json.dump(1) + "\n");
  write_text_atomically((dir / "unguided.json").string(), e.at(1).json.dump(1) + "\n");
  record.unguided = evaluation_summary(e.at(1));
  record.score_unguided = mean_of(e.at(1).per_seed);
  record.run = (dir / "run").string();
}

// A train cell: trains (or resumes) its run unless its diffusion artifact exists (a group trained it, or an
// earlier process), then evaluates the policy with its own guidance and without any.
void run_train_cell(const SweepConfig& c, const SweepCell& cell, const std::string& dataset_file, const fs::path& dir,
                    const std::string& progress_note, bool quiet, CellRecord& record) {
  if (!trained(dir)) {
    const agents::TrainOptions o = train_cell_options(c, cell, dir / "run");
    if (!quiet) std::fprintf(stderr, "sweep: %s training %s%s\n", progress_note.c_str(), cell.id.c_str(), o.resume ? " (resumed)" : "");
    agents::train(dataset_file, o);
  }
  record_evaluations(cell, dir, eval::evaluate_pairings(cell_pairings(cell, dir.parent_path()), c.eval), record);
}

// A swap cell: one train cell's policy guided by another's guidance module.
void run_swap_cell(const SweepConfig& c, const SweepCell& cell, const fs::path& cells_dir, const fs::path& dir,
                   const std::string& progress_note, bool quiet, CellRecord& record) {
  if (!quiet) std::fprintf(stderr, "sweep: %s evaluating %s\n", progress_note.c_str(), cell.id.c_str());
  record_evaluations(cell, dir, eval::evaluate_pairings(cell_pairings(cell, cells_dir), c.eval), record);
}


// How many train cells one process trains at once: --group-runs, or on CUDA 16 (the runs' kernels share the GPU,
// which one run leaves mostly idle) and on the CPU 1 (interleaving runs there gains nothing).
int group_size(const SweepConfig& c, const SweepRunOptions& run) {
  if (run.group_runs > 0) return run.group_runs;
  return resolve_device(c.device).kind == DeviceKind::Cuda ? 16 : 1;
}

// The train cells of this shard whose runs still need training, trained together in groups of cells of one
// algorithm and schedule (agents::train_group_on: each run exactly as it would train alone, in its own folder,
// resumed from its own checkpoint), before the cell loop evaluates them and writes their records. Each cell of a
// group is locked while the group trains; a busy cell is left to its process. A run that fails in a group is
// left as it stopped: the cell loop trains it alone and reports its error as a run alone would.
void train_cells_in_groups(const SweepConfig& c, const std::vector<SweepCell>& cells, const SweepData& data,
                           const fs::path& cells_dir, const std::vector<nlohmann::json>& definitions,
                           const SweepRunOptions& run) {
  int size = group_size(c, run);
  if (size <= 1) return;
  std::map<std::pair<std::string, std::string>, std::vector<size_t>> waiting;  // by (algo, schedule)
  for (size_t i = 0; i < cells.size(); ++i) {
    const fs::path dir = cells_dir / cells[i].id;
    if (static_cast<int>(i % run.shards) != run.shard || cells[i].kind != "train") continue;
    if (fs::exists(dir / "DONE") || trained(dir)) continue;
    waiting[{cells[i].algo, cells[i].schedule}].push_back(i);
  }
  std::map<std::string, agents::TrainingData> loaded;  // each dataset read once, on the device once per group
  for (const auto& [kind, indices] : waiting) {
    for (size_t first = 0; first + 1 < indices.size(); first += static_cast<size_t>(size)) {
      std::vector<std::unique_ptr<ExclusiveLock>> locks;
      std::vector<agents::GroupMember> members;
      std::string ids;
      for (size_t k = first; k < std::min(indices.size(), first + static_cast<size_t>(size)); ++k) {
        const SweepCell& cell = cells[indices[k]];
        const fs::path dir = cells_dir / cell.id;
        fs::create_directories(dir);
        auto lock = ExclusiveLock::try_acquire((dir / kFolderLockFile).string());
        if (!lock || fs::exists(dir / "DONE") || trained(dir)) continue;
        if (!fs::exists(dir / kDefinitionFile))
          write_text_atomically((dir / kDefinitionFile).string(), definitions[indices[k]].dump(1) + "\n");
        locks.push_back(std::move(lock));
        const std::string& file = data.file.at(cell.dataset);
        if (!loaded.count(file)) loaded.emplace(file, agents::load_training_data(file, true));
        members.push_back({&loaded.at(file).data, loaded.at(file).ref, train_cell_options(c, cell, dir / "run")});
        ids += (ids.empty() ? "" : ", ") + cell.id;
      }
      if (members.size() < 2) continue;  // one run alone: the cell loop trains it
      if (!run.quiet) std::fprintf(stderr, "sweep: training %zu runs together: %s\n", members.size(), ids.c_str());
      const auto results = agents::train_group_on(members);
      bool out_of_memory = false;
      for (size_t k = 0; k < results.size(); ++k) {
        if (results[k].error.empty()) continue;
        out_of_memory = out_of_memory || results[k].error.find("out of memory") != std::string::npos;
        if (!run.quiet)
          std::fprintf(stderr, "sweep: %s failed in its group (%s); it is trained again alone\n",
                       members[k].options.out.c_str(), results[k].error.c_str());
      }
      // Groups that fit the GPU's memory: a group that ran out of it is followed by groups half its size.
      if (out_of_memory && size > 1) {
        size = std::max(1, size / 2);
        if (!run.quiet) std::fprintf(stderr, "sweep: the GPU's memory held too little: groups of %d from here on\n", size);
      }
      if (run.after_cell) run.after_cell();  // a sign of life for MPI ranks
    }
  }
}

}  // namespace

namespace {

// The cells most evaluated in one episode pool (the pairings' policies and every episode's world at once).
constexpr size_t kCellsPerEvaluationBatch = 24;

// The cells of this shard that only need evaluating (train cells trained, swap cells whose trainings are
// finished), locked, evaluated together in batches (eval::evaluate_pairings: one episode pool per env, each
// pairing's episodes what it would have alone), each with its files and DONE record. Rounds repeat while cells
// become ready (a swap cell once its train cells are done). Returns the cells finished.
int evaluate_ready_cells(const SweepConfig& c, const std::vector<SweepCell>& cells, const fs::path& cells_dir,
                         const std::vector<nlohmann::json>& definitions, const SweepRunOptions& run) {
  auto done = [&](const std::string& id) { return fs::exists(cells_dir / id / "DONE"); };
  std::set<size_t> tried;  // cells found busy or evaluated: not looked at again
  int finished = 0;
  for (bool more = true; more;) {
    more = false;
    std::vector<std::unique_ptr<ExclusiveLock>> locks;
    std::vector<size_t> batch;
    for (size_t i = 0; i < cells.size() && batch.size() < kCellsPerEvaluationBatch; ++i) {
      const SweepCell& cell = cells[i];
      if (static_cast<int>(i % run.shards) != run.shard || tried.count(i) || done(cell.id)) continue;
      const bool ready = cell.kind == "train" ? trained(cells_dir / cell.id)
                                              : done(cell.policy_cell) && done(cell.guidance_cell);
      if (!ready) continue;
      auto lock = ExclusiveLock::try_acquire((cells_dir / cell.id / kFolderLockFile).string());
      tried.insert(i);
      if (!lock || done(cell.id)) continue;
      if (!fs::exists(cells_dir / cell.id / kDefinitionFile))
        write_text_atomically((cells_dir / cell.id / kDefinitionFile).string(), definitions[i].dump(1) + "\n");
      locks.push_back(std::move(lock));
      batch.push_back(i);
    }
    if (batch.empty()) break;
    std::vector<eval::Pairing> pairings;
    std::string ids;
    for (size_t i : batch) {
      const auto mine = cell_pairings(cells[i], cells_dir);
      pairings.insert(pairings.end(), mine.begin(), mine.end());
      ids += (ids.empty() ? "" : ", ") + cells[i].id;
    }
    if (!run.quiet) std::fprintf(stderr, "sweep: evaluating %zu cells together: %s\n", batch.size(), ids.c_str());
    const auto evaluations = eval::evaluate_pairings(pairings, c.eval);
    size_t next = 0;
    for (size_t i : batch) {
      const size_t count = cells[i].kind == "train" ? 2 : 1;
      const std::vector<eval::Evaluation> mine(evaluations.begin() + next, evaluations.begin() + next + count);
      next += count;
      CellRecord record = new_record(cells[i], definitions[i]);
      record_evaluations(cells[i], cells_dir / cells[i].id, mine, record);
      write_text_atomically((cells_dir / cells[i].id / "DONE").string(), nlohmann::json(record).dump(1) + "\n");
      ++finished;
      if (run.after_cell) run.after_cell();
    }
    more = true;
  }
  return finished;
}

}  // namespace

SweepProgress run_sweep(const SweepConfig& c, const std::string& out_dir, const SweepRunOptions& run) {
  const int shard = run.shard, shards = run.shards;
  const bool quiet = run.quiet;
  if (shards <= 0 || shard < 0 || shard >= shards) throw Error("--shard: K/N needs 1 <= K <= N");
  const fs::path out(out_dir), cells_dir = out / "cells";
  fs::create_directories(cells_dir);
  const auto cells = plan_cells(c);
  const SweepData data = resolve_sweep_data(c, out, quiet);
  std::vector<nlohmann::json> definitions;
  for (const auto& cell : cells) {
    path_under(cells_dir.string(), cell.id, "sweep cell id");
    definitions.push_back(cell_definition(c, data, cell));
  }
  check_cell_definitions(cells, definitions, cells_dir, run);
  train_cells_in_groups(c, cells, data, cells_dir, definitions, run);
  SweepProgress progress;
  progress.total = static_cast<int>(cells.size());
  progress.finished = evaluate_ready_cells(c, cells, cells_dir, definitions, run);
  auto done_file = [&](const std::string& id) { return cells_dir / id / "DONE"; };
  for (size_t i = 0; i < cells.size(); ++i) {
    if (static_cast<int>(i % shards) != shard) continue;
    const SweepCell& cell = cells[i];
    const fs::path dir = cells_dir / cell.id;
    if (fs::exists(done_file(cell.id))) {
      ++progress.skipped;
      continue;
    }
    if (cell.kind == "swap" && (!fs::exists(done_file(cell.policy_cell)) || !fs::exists(done_file(cell.guidance_cell)))) {
      ++progress.waiting;
      continue;
    }
    fs::create_directories(dir);
    // Another process of this sweep (a second `modiff sweep` on the folder) may be running the cell: leave it.
    const auto lock = ExclusiveLock::try_acquire((dir / kFolderLockFile).string());
    if (!lock) {
      ++progress.busy;
      continue;
    }
    if (fs::exists(done_file(cell.id))) {  // finished by that process while we looked
      ++progress.skipped;
      continue;
    }
    if (!fs::exists(dir / kDefinitionFile))
      write_text_atomically((dir / kDefinitionFile).string(), definitions[i].dump(1) + "\n");
    CellRecord record = new_record(cell, definitions[i]);
    const std::string note = "[" + std::to_string(i + 1) + "/" + std::to_string(cells.size()) + "]";
    if (cell.kind == "train")
      run_train_cell(c, cell, data.file.at(cell.dataset), dir, note, quiet, record);
    else
      run_swap_cell(c, cell, cells_dir, dir, note, quiet, record);
    write_text_atomically(done_file(cell.id).string(), nlohmann::json(record).dump(1) + "\n");
    ++progress.finished;
    if (run.after_cell) run.after_cell();
  }
  return progress;
}

}  // namespace modiff::sweeps
