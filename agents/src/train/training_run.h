#pragma once
// One run of `modiff train` (train_on): the modules it trains, the schedule's phases, and what a checkpoint
// carries. trainer.cpp runs the phases, checkpoint.cpp saves and restores, manifests.cpp writes the
// artifacts. LibTorch inside; train.h is the public face.
#include <torch/torch.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "algos/algorithm.h"
#include "algos/stacked_steps.h"
#include "io/artifact_io.h"
#include "modiff/agents/artifact.h"
#include "modiff/agents/train.h"
#include "modiff/torch/device.h"
#include "runtime/cuda_support.h"
#include "runtime/implementation.h"
#include "runtime/run_context.h"
#include "train/metrics_log.h"
#include "train/run_folder.h"

namespace modiff::agents {

struct PhasePlan {
  std::string name;  // joint | guidance | diffusion
  long steps;
};

// The phase a run is in: what lives from its first step to its last.
struct ActivePhase {
  using Clock = std::chrono::steady_clock;
  MetricsLog log;
  int per_replay = 1;                    // steps per captured graph (1: eager)
  std::unique_ptr<GraphedSteps> steps;   // runs `count` steps, through the graph where it can
  Clock::time_point start, interval_start;
  long interval_first = 1;               // the first step of the current logging interval
  std::optional<std::string> trace_prefix;  // MODIFF_PROFILE_TRACE, read once per phase
  int stacked_runs = 1;                  // the largest stack it took steps in
  std::string stack_key;                 // TrainingRun::stack_key, made once per phase
};

class TrainingRun {
 public:
  // Checks the options and a frozen guidance, locks (and, without --resume, empties) the run folder, builds
  // the data and the modules, and restores the checkpoint with --resume.
  // `shared_data`: the dataset on the device as other runs of a group already hold it (null: made here).
  TrainingRun(const datasets::Dataset& dataset, const DatasetRef& ref, const TrainOptions& options,
              std::shared_ptr<const OfflineData> shared_data = nullptr);
  // The remaining phases, then the artifacts (or a checkpoint, when --stop-after stops it).
  TrainResult run();
  // The same in pieces, for runs trained side by side: each advance() queues the next steps (one captured graph
  // on CUDA, without waiting for them) and makes the host visits due after them (metrics row, evaluation,
  // checkpoint, phase end); false once nothing is left to train. finish() then writes the artifacts.
  bool advance();
  TrainResult finish();
  // advance() in parts, for a group whose runs' steps are stacked (group.cpp): the steps the next advance takes
  // (the phase begun where due; 0 once nothing is left to train), then either the run's own steps or, where a
  // stack took them for it, none, and the host visits due after them; false once nothing is left.
  int steps_due();
  bool take_steps(int count);
  bool took_steps(int count);
  // What runs must share to be stacked (algos/stacked_steps.h): algorithm, phase, every hyperparameter, the
  // data's shapes, the device (empty: this run's steps are never stacked); where it stands in its phase.
  std::string stack_key() const;
  long phase_step() const { return phase_step_; }
  const std::string& phase_name() const { return plan_[phase_index_].name; }
  int steps_per_graph() const { return active_ ? active_->per_replay : 1; }
  // What a stack needs of this run in its current phase. Its own captured steps are dropped: they would write
  // into the parameters' storage of before the stack.
  StackMember stack_member(int stack_size);
  MetricsLog& phase_log() { return active_->log; }  // where a stack adds this run's metrics
  // The developer's kernel trace (MODIFF_PROFILE_TRACE, cuda_support.h) of steps 201..220 of the phase: started
  // before the steps that begin it, written after those that end it as PREFIX_<label><phase>.json (a stack's
  // steps are traced through its first run, label "stack_").
  void trace_before_steps() const;
  void trace_after_steps(int count, const std::string& label) const;
  const std::shared_ptr<const OfflineData>& data() const { return data_; }
  // A group's runs share the process's allocator: their phases record the group's peak and its size.
  void set_group_size(int runs) { group_size_ = runs; }

 private:
  // trainer.cpp
  void prepare_guidance(const datasets::Dataset& dataset);
  void check_resumable() const;
  void build_modules(const datasets::Dataset& dataset, std::shared_ptr<const OfflineData> shared_data);
  void begin_phase(const PhasePlan& phase);
  enum class StepOutcome { More, PhaseDone, Stopped };
  bool captured_steps() const;
  std::array<long, 2> trace_edges() const;
  std::string phase_stack_key(const PhasePlan& phase) const;  // the first step traced, and the step after the last  // on CUDA, in the fast implementation, unless --no-cuda-graphs
  std::unique_ptr<GraphedSteps> phase_steps(const PhasePlan& phase) const;
  int step_count(const PhasePlan& phase) const;
  StepOutcome steps_done(const PhasePlan& phase, int count);  // Stopped: by --stop-after (checkpoint written)
  bool after_steps(int count);
  void log_interval(const PhasePlan& phase, long step);
  void next_phase();
  void end_phase(const PhasePlan& phase, double seconds);
  std::string evaluate_now();
  bool stop_here(const std::string& phase_name, long step);
  TrainResult write_results();
  // checkpoint.cpp
  NamedTensors all_tensors();
  void write_metrics() const;
  void save_checkpoint(double phase_seconds);
  void restore_checkpoint();
  // manifests.cpp
  nlohmann::json guidance_manifest() const;
  nlohmann::json diffusion_manifest() const;
  void write_artifact(const std::string& name, const nlohmann::json& manifest, const NamedTensors& weights) const;

  const TrainOptions& o_;
  const DatasetRef ref_;
  const std::vector<PhasePlan> plan_;
  const ResolvedConfig resolved_;
  const AlgorithmConfig& config_;
  const DeviceChoice choice_;
  const torch::Device device_;
  const Implementation implementation_;
  RunContext context_;  // its random streams and CUDA stream, in place while it works
  const GradientsBesideScope gradients_beside_;  // the fast implementation's on CUDA, for as long as the run lives
  const std::filesystem::path out_, ckpt_;
  const long log_every_, ckpt_every_, eval_every_;
  const bool progress_;  // a progress line on a terminal

  ArtifactInfo guidance_info_;  // a frozen --guidance DIR's
  TrainResult result_;
  std::unique_ptr<GuidanceModule> guidance_;
  std::optional<RunFolder> folder_;
  bool had_checkpoint_ = false;
  std::shared_ptr<const OfflineData> data_;
  std::unique_ptr<DiffusionModel> policy_;
  std::unique_ptr<Algorithm> algorithm_;
  nlohmann::json options_;  // what a resumed run must share with this one

  // What a checkpoint carries besides tensors.
  size_t phase_index_ = 0;
  long phase_step_ = 0;
  double phase_seconds_before_ = 0;
  std::vector<PhaseRecord> done_;
  std::vector<std::string> rows_;  // metrics.csv

  double eval_seconds_ = 0;  // of the current phase: not training time
  long trained_now_ = 0;     // steps of this invocation, for stop_after
  std::unique_ptr<ActivePhase> active_;  // null between phases
  bool stopped_ = false;     // by --stop-after
  int group_size_ = 1;
};

}  // namespace modiff::agents
