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

#include "modiff/datasets/d4rl_dataset.h"

namespace modiff::agents {

// The lock file every run folder holds while a run writes it (common/file_lock.h).
inline constexpr const char* kRunLockFile = ".modiff-lock";

struct TrainOptions {
  std::string algo = "idql";        // idql | dql | cfg
  std::string schedule = "joint";   // joint | guidance-first
  long steps = 0;                   // diffusion steps (joint: steps of both)
  long guidance_steps = -1;         // guidance-first: guidance steps (default: steps)
  std::string guidance_dir;         // train the diffusion under this frozen module
  std::string guidance_kind;        // iql | twin-q (default: the algorithm's)
  int batch = 0;                    // 0: the algorithm's (idql, cfg 512; dql 256)
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
  double lr = 0;                    // > 0: overrides every learning rate
  bool cuda_graphs = true;          // on CUDA, capture the training step once and replay it
  bool normalize_obs = false;       // standardize observations with dataset statistics
  double eta = 1.0;                 // dql: Q-loss weight
  int diffusion_steps = 0;          // > 0: overrides T (5 in IDQL and Diffusion-QL)
  double ema_rate = 0;              // > 0: overrides the policy's EMA rate (short runs)
  // Evaluation during training: every eval_every steps of the diffusion (or
  // joint) phase, and at its end, evaluate(diffusion_dir, guidance_dir) returns
  // the mean normalized score with the guidance and without it (guidance
  // necessity); both go into metrics.csv. The CLI wires it to the evaluator.
  long eval_every = 0;
  std::function<std::pair<double, double>(const std::string&, const std::string&)> evaluate;
  // Smaller networks for tests and quick looks (0: the reference sizes).
  int hidden = 0;                   // critics and denoiser hidden width
  int block_width = 0;              // ln-resnet inner width
};

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
};

struct TrainResult {
  std::string guidance_dir, diffusion_dir, metrics_csv;
  std::vector<PhaseRecord> phases;
  std::vector<std::string> warnings;
  bool stopped = false;  // stop_after reached: OUT/checkpoint/ holds the run, no artifacts yet
  long stopped_phase_step = 0;
  std::string stopped_phase;
};

// Loads `dataset` (a file, or a name in the data home, built on first use for
// bullet-D4RL names) and trains.
TrainResult train(const std::string& dataset, const TrainOptions& options);
// Trains on an in-memory dataset.
TrainResult train_on(const datasets::Dataset& data, const DatasetRef& ref, const TrainOptions& options);

// The dataset file for a name or path; bullet-D4RL suite names are built into
// the data home on first use (progress on stderr unless quiet).
std::string resolve_dataset(const std::string& name_or_file, bool quiet);

}  // namespace modiff::agents
