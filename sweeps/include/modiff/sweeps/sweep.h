#pragma once
// Sweeps: a TOML grid of datasets x algorithms x schedules x training seeds,
// each cell trained then evaluated with its guidance and without, plus swap
// cells (a policy with the guidance of another training seed, or of another
// algorithm). Every cell lives in OUT/cells/<id>/ and is finished when its
// DONE file exists (written last, atomically): rerunning a sweep skips
// finished cells, resumes interrupted trainings from their checkpoints and
// redoes nothing else, so a sweep killed at any moment finishes on rerun.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "modiff/eval/evaluation.h"

namespace modiff::sweeps {

// Limits a sweep file is checked against before anything runs.
inline constexpr long kMaxSweepSteps = 1000000000;  // steps of one phase, as `train --steps`
inline constexpr long kMaxSweepCells = 1000000;     // cells in one grid

struct SweepConfig {
  std::string name = "sweep";
  std::vector<std::string> datasets;   // suite names or files
  long dataset_transitions = 0;        // > 0: suite datasets built at this size into OUT/data/
  std::vector<std::string> algos{"idql", "dql"};
  std::vector<std::string> schedules{"joint", "guidance-first"};
  std::vector<uint64_t> seeds{0, 1, 2, 3, 4};
  long steps = 100000;
  long guidance_steps = -1;
  int batch = 0, hidden = 0, block_width = 0;
  double ema_rate = 0;
  // [hyperparameters]: NAME = VALUE overrides of every cell's run ("" key: every algorithm; [hyperparameters.A]:
  // algorithm A's), applied after [network] as `modiff train --set` would (modiff hyperparameters lists names).
  std::map<std::string, std::vector<std::string>> hyperparameters;
  std::string device = "auto";
  long log_every = 1000;
  long eval_every = 0;                 // evaluation during training (with and without guidance)
  int eval_every_episodes = 5;
  eval::EvalSettings eval;                   // final evaluation of every cell
  bool seed_swaps = true;              // every policy seed with every other seed's guidance (same algo, schedule)
  std::vector<std::pair<std::string, std::string>> cross_algorithm;  // (guidance algo, policy algo)
};

// Parses a sweep file (TOML); `where` names it in errors.
SweepConfig parse_sweep_config(const std::string& toml_text, const std::string& where);
// The quickstart grid that `modiff run` uses when given no file.
const char* default_sweep_toml();

struct SweepCell {
  std::string id;      // train-<dataset>-<algo>-<schedule>-s<seed> or swap-...
  std::string kind;    // train | swap
  std::string dataset, algo, schedule;
  uint64_t seed = 0;
  // swap cells: the policy's and the guidance's training cells
  std::string policy_cell, guidance_cell;
  std::string guidance_algo;  // the algorithm whose guidance ranks the candidates
};

// Every cell of the grid, in a fixed order (training cells first).
std::vector<SweepCell> plan_cells(const SweepConfig& config);

struct SweepProgress {
  int finished = 0, skipped = 0, waiting = 0, total = 0;
  int busy = 0;  // cells another process was running (their lock was held)
};

struct SweepRunOptions {
  int shard = 0, shards = 1;   // run the cells i with i mod shards == shard
  bool quiet = false;          // no progress lines
  bool redo_changed = false;   // redo cells whose definition changed instead of stopping
  std::function<void()> after_cell;  // called after each finished cell (MPI ranks' signs of life)
  // Train cells trained at once, side by side in this process (agents::train_group_on); 0: 16 on CUDA, 1 on
  // the CPU.
  int group_runs = 0;
};

// Runs the cells of a shard. Before the first cell: the datasets are resolved (and built), and every cell
// already started under out_dir is checked to have been started with the definition the config gives it now
// (its cell.json: the data's sha256, steps, networks, evaluation). A swap cell whose training cells are not
// finished yet (another shard's) waits: it is counted and left for a rerun. Each running cell holds a lock, so a
// second process on the same folder leaves it alone (counted as busy).
SweepProgress run_sweep(const SweepConfig& config, const std::string& out_dir, const SweepRunOptions& run = {});

}  // namespace modiff::sweeps
