#include "modiff/eval/sweep.h"

#include <toml++/toml.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "modiff/agents/behavior_suite.h"
#include "modiff/agents/train.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/error.h"
#include "modiff/common/remove_tree.h"
#include "modiff/datasets/data_home.h"
#include "modiff/eval/evaluate.h"

namespace modiff::eval {

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
  if (const auto v = node->value<T>()) return *v;
  bad(where, std::string(key) + " has the wrong type");
}

std::vector<uint64_t> seed_values(const toml::table& t, const char* key, const std::string& where,
                                  std::vector<uint64_t> fallback) {
  const auto* node = t.get(key);
  if (!node) return fallback;
  if (const auto s = node->value<std::string>()) return parse_seed_list(*s);
  const auto* arr = node->as_array();
  if (!arr) bad(where, std::string(key) + " must be an array of seeds or a string like \"0-4\"");
  std::vector<uint64_t> out;
  for (const auto& e : *arr) {
    const auto v = e.value<int64_t>();
    if (!v || *v < 0) bad(where, std::string(key) + " must hold non-negative integers");
    out.push_back(static_cast<uint64_t>(*v));
  }
  if (out.empty()) bad(where, std::string(key) + " is empty");
  return out;
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

}  // namespace

SweepConfig parse_sweep_config(const std::string& text, const std::string& where) {
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
              "device", "log_every", "network", "eval", "swaps"},
             where, "");
  SweepConfig c;
  c.name = number<std::string>(root, "name", where, c.name);
  c.datasets = strings(root, "datasets", where, {});
  if (c.datasets.empty()) bad(where, "datasets: name at least one dataset");
  c.dataset_transitions = number<int64_t>(root, "dataset_transitions", where, 0);
  c.algos = strings(root, "algos", where, c.algos);
  for (const auto& a : c.algos)
    if (a != "idql" && a != "dql" && a != "cfg") bad(where, "algos: unknown algorithm '" + a + "'");
  c.schedules = strings(root, "schedules", where, c.schedules);
  for (const auto& s : c.schedules)
    if (s != "joint" && s != "guidance-first") bad(where, "schedules: unknown schedule '" + s + "'");
  c.seeds = seed_values(root, "seeds", where, c.seeds);
  c.steps = number<int64_t>(root, "steps", where, c.steps);
  if (c.steps <= 0) bad(where, "steps must be positive");
  c.guidance_steps = number<int64_t>(root, "guidance_steps", where, -1);
  c.device = number<std::string>(root, "device", where, c.device);
  c.log_every = number<int64_t>(root, "log_every", where, c.log_every);
  if (const auto* net = root["network"].as_table()) {
    check_keys(*net, {"hidden", "block_width", "batch", "ema_rate"}, where, "network");
    c.hidden = static_cast<int>(number<int64_t>(*net, "hidden", where, 0));
    c.block_width = static_cast<int>(number<int64_t>(*net, "block_width", where, 0));
    c.batch = static_cast<int>(number<int64_t>(*net, "batch", where, 0));
    c.ema_rate = number<double>(*net, "ema_rate", where, 0.0);
  }
  c.eval.device = c.device;
  if (const auto* ev = root["eval"].as_table()) {
    check_keys(*ev, {"seeds", "episodes", "candidates", "select", "bootstrap_reps", "every", "every_episodes"}, where,
               "eval");
    c.eval.seeds = seed_values(*ev, "seeds", where, c.eval.seeds);
    c.eval.episodes = static_cast<int>(number<int64_t>(*ev, "episodes", where, c.eval.episodes));
    c.eval.candidates = static_cast<int>(number<int64_t>(*ev, "candidates", where, 0));
    c.eval.select = number<std::string>(*ev, "select", where, "");
    c.eval.bootstrap_reps = static_cast<int>(number<int64_t>(*ev, "bootstrap_reps", where, c.eval.bootstrap_reps));
    c.eval_every = number<int64_t>(*ev, "every", where, 0);
    c.eval_every_episodes = static_cast<int>(number<int64_t>(*ev, "every_episodes", where, c.eval_every_episodes));
  }
  if (const auto* sw = root["swaps"].as_table()) {
    check_keys(*sw, {"seeds", "cross_algorithm"}, where, "swaps");
    c.seed_swaps = number<bool>(*sw, "seeds", where, true);
    if (const auto* pairs = (*sw)["cross_algorithm"].as_array()) {
      for (const auto& p : *pairs) {
        const auto* pair = p.as_array();
        if (!pair || pair->size() != 2 || !(*pair)[0].value<std::string>() || !(*pair)[1].value<std::string>())
          bad(where, "swaps.cross_algorithm holds pairs [\"guidance algo\", \"policy algo\"]");
        c.cross_algorithm.push_back({*(*pair)[0].value<std::string>(), *(*pair)[1].value<std::string>()});
      }
    }
  }
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
std::string sweep_dataset(const SweepConfig& c, const std::string& name, const fs::path& out, bool quiet) {
  if (c.dataset_transitions <= 0 || fs::is_regular_file(name)) return agents::resolve_dataset(name, quiet);
  for (const auto& entry : datasets::suite()) {
    if (entry.name != name) continue;
    const fs::path file = out / "data" / (name + "-" + std::to_string(c.dataset_transitions) + ".hdf5");
    if (!fs::exists(file)) {
      if (!quiet) std::fprintf(stderr, "sweep: building %s (%ld transitions)\n", name.c_str(), c.dataset_transitions);
      agents::SuiteBuildOptions opt;
      opt.transitions = c.dataset_transitions;
      datasets::write_d4rl_file(file.string(), agents::build_suite_dataset(entry, opt));
    }
    return file.string();
  }
  return agents::resolve_dataset(name, quiet);
}

nlohmann::json evaluation_summary(const Evaluation& e) {
  nlohmann::json per_seed = nlohmann::json::array();
  for (double s : e.per_seed) per_seed.push_back(s);
  return {{"per_seed", per_seed}, {"aggregate", e.json.at("aggregate")}};
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / v.size();
}

}  // namespace

SweepProgress run_sweep(const SweepConfig& c, const std::string& out_dir, int shard, int shards, bool quiet) {
  if (shards <= 0 || shard < 0 || shard >= shards) throw Error("--shard: K/N needs 1 <= K <= N");
  const fs::path out(out_dir);
  fs::create_directories(out / "cells");
  const auto cells = plan_cells(c);
  SweepProgress progress;
  progress.total = static_cast<int>(cells.size());
  auto done_file = [&](const std::string& id) { return out / "cells" / id / "DONE"; };
  for (size_t i = 0; i < cells.size(); ++i) {
    if (static_cast<int>(i % shards) != shard) continue;
    const SweepCell& cell = cells[i];
    const fs::path dir = out / "cells" / cell.id;
    if (fs::exists(done_file(cell.id))) {
      ++progress.skipped;
      continue;
    }
    fs::create_directories(dir);
    nlohmann::json record = {{"id", cell.id},         {"kind", cell.kind},       {"dataset", cell.dataset},
                             {"algo", cell.algo},     {"schedule", cell.schedule}, {"seed", cell.seed},
                             {"policy_cell", cell.policy_cell}, {"guidance_cell", cell.guidance_cell},
                             {"guidance_algo", cell.guidance_algo}};
    if (cell.kind == "train") {
      const fs::path run = dir / "run";
      if (!fs::exists(run / "diffusion" / "manifest.json")) {
        agents::TrainOptions o;
        o.algo = cell.algo;
        o.schedule = cell.schedule;
        o.steps = c.steps;
        if (cell.schedule == "guidance-first") o.guidance_steps = c.guidance_steps;
        o.seed = cell.seed;
        o.device = c.device;
        o.out = run.string();
        o.quiet = true;
        o.batch = c.batch;
        o.hidden = c.hidden;
        o.block_width = c.block_width;
        o.ema_rate = c.ema_rate;
        o.log_every = c.log_every;
        o.checkpoint_every = std::max(c.log_every, c.steps / 5);
        o.resume = fs::exists(run / "checkpoint" / "state.json");
        if (!o.resume) remove_tree(run.string());  // a start that never reached its first checkpoint
        if (c.eval_every > 0) {
          o.eval_every = c.eval_every;
          EvalSettings curve = c.eval;
          curve.seeds.clear();
          for (int s = 0; s < c.eval_every_episodes; ++s) curve.seeds.push_back(static_cast<uint64_t>(s));
          curve.episodes = 1;
          curve.bootstrap_reps = 1;
          o.evaluate = [curve](const std::string& d, const std::string& g) {
            return std::make_pair(mean_of(evaluate_pairing(d, g, curve).per_seed),
                                  mean_of(evaluate_pairing(d, "none", curve).per_seed));
          };
        }
        if (!quiet) std::fprintf(stderr, "sweep: [%zu/%zu] training %s%s\n", i + 1, cells.size(), cell.id.c_str(), o.resume ? " (resumed)" : "");
        agents::train(sweep_dataset(c, cell.dataset, out, quiet), o);
      }
      const auto guided = evaluate_pairing((run / "diffusion").string(), (run / "guidance").string(), c.eval);
      write_text_atomically((dir / "guided.json").string(), guided.json.dump(1) + "\n");
      const auto unguided = evaluate_pairing((run / "diffusion").string(), "none", c.eval);
      write_text_atomically((dir / "unguided.json").string(), unguided.json.dump(1) + "\n");
      record["guided"] = evaluation_summary(guided);
      record["unguided"] = evaluation_summary(unguided);
      record["score"] = mean_of(guided.per_seed);
      record["score_unguided"] = mean_of(unguided.per_seed);
      record["run"] = run.string();
    } else {
      if (!fs::exists(done_file(cell.policy_cell)) || !fs::exists(done_file(cell.guidance_cell))) {
        ++progress.waiting;
        continue;
      }
      const fs::path policy = out / "cells" / cell.policy_cell / "run" / "diffusion";
      const fs::path guidance = out / "cells" / cell.guidance_cell / "run" / "guidance";
      if (!quiet) std::fprintf(stderr, "sweep: [%zu/%zu] evaluating %s\n", i + 1, cells.size(), cell.id.c_str());
      const auto e = evaluate_pairing(policy.string(), guidance.string(), c.eval);
      write_text_atomically((dir / "eval.json").string(), e.json.dump(1) + "\n");
      record["guided"] = evaluation_summary(e);
      record["score"] = mean_of(e.per_seed);
    }
    write_text_atomically(done_file(cell.id).string(), record.dump(1) + "\n");
    ++progress.finished;
  }
  return progress;
}

}  // namespace modiff::eval
