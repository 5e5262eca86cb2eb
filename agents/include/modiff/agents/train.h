#pragma once
// `modiff train`: a guidance module and a diffusion policy from an offline
// dataset, on one of two schedules:
//   joint          : both updated together from step 0 (the published algorithms);
//   guidance-first : the guidance trained alone for guidance_steps, frozen, then
//                    the diffusion trained under it for `steps`.
// With guidance_dir, the diffusion trains under that existing frozen module.
// Writes OUT/guidance/ and OUT/diffusion/ (weights.pt + manifest.json),
// OUT/metrics.csv, and OUT/checkpoint/ (atomic, resumable). LibTorch-free header.
#include <cstdint>
#include <functional>
#include <utility>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "modiff/datasets/d4rl_dataset.h"

namespace modiff::agents {

struct TrainOptions {
  std::string algo = "idql";        // idql | dql | cfg
  std::string schedule = "joint";   // joint | guidance-first
  long steps = 0;                   // diffusion steps (joint: steps of both)
  long guidance_steps = -1;         // guidance-first: guidance steps (default: steps)
  std::string guidance_dir;         // train the diffusion under this frozen module
  std::string guidance_kind;        // iql | twin-q; empty: the algorithm's own
  uint64_t seed = 0;
  std::string device = "auto";
  std::string out = "runs/train";
  bool resume = false;
  bool force = false;               // replace an earlier run in `out` (without it, a non-empty `out` is refused)
  bool quiet = false;               // no progress line
  long log_every = 1000;            // metrics.csv rows
  long checkpoint_every = 10000;    // rounded up to a multiple of log_every
  // > 0: checkpoint and stop once this invocation has trained this many steps
  // (counted over all phases, rounded up to the next --log-every row or phase
  // end); a later --resume continues bit for bit. For jobs with a time limit.
  long stop_after = 0;
  // Overrides of the algorithm's hyperparameters, "NAME=VALUE", applied in order over its reference
  // values (`modiff hyperparameters --algo A` lists the names, values, ranges and sources).
  std::vector<std::string> set;
  bool cuda_graphs = true;          // on CUDA, capture the training step once and replay it (fast implementation)
  // How the models compute (docs/architecture.md): "fast" (parts, fused kernels, graphs on CUDA) or
  // "reference" (plain LibTorch modules, every step eager). The same functions and parameters.
  std::string implementation = "fast";
  // Evaluation during training: every eval_every steps of the diffusion (or
  // joint) phase, and at its end, evaluate(diffusion_dir, guidance_dir) returns
  // the mean normalized score with the guidance and without it (guidance
  // necessity); both go into metrics.csv. The CLI wires it to the evaluator.
  long eval_every = 0;
  std::function<std::pair<double, double>(const std::string&, const std::string&)> evaluate;
};

// One hyperparameter of an algorithm: its name (as `--set NAME=VALUE` takes it), value, the values it may
// take and where the reference value comes from.
struct HyperparameterRow {
  std::string name, value, range, source;
};
// The hyperparameters a run of `algo` would use (guidance_kind empty: the algorithm's own guidance) on the
// dataset named `dataset` (some reference values depend on it), after `overrides`; throws Error on an
// unknown algorithm, kind or name, or a value outside its range.
std::vector<HyperparameterRow> hyperparameters(const std::string& algo, const std::string& guidance_kind,
                                               const std::string& dataset, const std::vector<std::string>& overrides);
std::vector<std::string> algorithm_names();

// The dataset as the artifacts record it.
struct DatasetRef {
  std::string name, sha256, env_id;  // env_id may be empty (data of no registered env)
};

struct PhaseRecord {
  std::string name;  // joint | guidance | diffusion
  long steps = 0;
  double seconds = 0;
  double steps_per_s = 0;
  long peak_memory_bytes = 0;
  std::string memory_kind;  // cuda-allocator-peak | cpu-peak-rss
  // The runs trained together in the process (train_group_on): the peak is the group's, all of them together.
  int runs_in_process = 1;
  // The most runs whose steps were stacked with this run's (on CUDA, runs of one algorithm, phase and shapes
  // trained as one network with stacked weights: docs/agents.md, "Several runs at once"); 1: its own steps.
  int stacked_runs = 1;
};

// As manifests, checkpoints and `modiff train --json` write a phase.
void to_json(nlohmann::json& j, const PhaseRecord& p);
void from_json(const nlohmann::json& j, PhaseRecord& p);

struct TrainResult {
  std::string guidance_dir, diffusion_dir, metrics_csv;
  std::vector<PhaseRecord> phases;
  std::vector<std::string> warnings;
  bool stopped = false;  // stop_after reached: OUT/checkpoint/ holds the run, no artifacts yet
  long stopped_phase_step = 0;
  std::string stopped_phase;
};

// A dataset (a file, or a name in the data home, built on first use for bullet-D4RL names) as training reads it,
// with the record its artifacts keep.
struct TrainingData {
  datasets::Dataset data;
  DatasetRef ref;
};
TrainingData load_training_data(const std::string& dataset, bool quiet);

// Loads `dataset` (load_training_data) and trains.
TrainResult train(const std::string& dataset, const TrainOptions& options);
// Trains on an in-memory dataset.
TrainResult train_on(const datasets::Dataset& data, const DatasetRef& ref, const TrainOptions& options);

// Several runs trained together in one process: step by step side by side, on CUDA each run's steps on a CUDA
// stream of its own so that the kernels of all of them share the GPU (one run alone leaves most of it idle).
// Each run is exactly the run train_on would train alone: its own seed and random streams, data sampling,
// optimizer state, EMA, checkpoints, metrics.csv and artifacts, in its own `out`. Runs on the same dataset
// object and device share one copy of the data on the device. A run that cannot start or fails (a busy folder,
// a non-finite loss) gets its `error` and the others go on.
struct GroupMember {
  const datasets::Dataset* data = nullptr;
  DatasetRef ref;
  TrainOptions options;
};
struct GroupRunResult {
  TrainResult result;
  std::string error;  // empty: trained (or stopped by stop_after)
};
std::vector<GroupRunResult> train_group_on(const std::vector<GroupMember>& members);
// Loads `dataset` as train() does, once, and trains a group of runs on it.
std::vector<GroupRunResult> train_group(const std::string& dataset, const std::vector<TrainOptions>& options);

}  // namespace modiff::agents
