// The training driver: the schedule's phases one after the other, each in steps between logging rows, with
// checkpoints, evaluation during training and --stop-after between them, then the artifacts.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>

#include "modiff/behavior/behavior_suite.h"
#include "modiff/common/error.h"
#include "modiff/common/environment.h"
#include "modiff/common/peak_memory.h"
#include "modiff/common/remove_tree.h"
#include "modiff/datasets/sha256.h"
#include "modiff/torch/torch_support.h"
#include "runtime/cuda_support.h"
#include "train/metrics_log.h"
#include "train/training_run.h"

namespace modiff::agents {

namespace fs = std::filesystem;

TrainingData load_training_data(const std::string& dataset, bool quiet) {
  const std::string path = behavior::resolve_dataset(dataset, quiet);
  TrainingData loaded{datasets::read_d4rl_file(path), {}};
  const auto& attributes = loaded.data.attributes;
  loaded.ref.name = attributes.name.empty() ? fs::path(path).stem().string() : attributes.name;
  loaded.ref.sha256 = datasets::sha256_file(path);
  loaded.ref.env_id = attributes.env_id;
  return loaded;
}

TrainResult train(const std::string& dataset, const TrainOptions& options) {
  const TrainingData loaded = load_training_data(dataset, options.quiet);
  return train_on(loaded.data, loaded.ref, options);
}

namespace {

// What a resumed run must share with the checkpointed one: the schedule, the seed, the data and every
// hyperparameter as resolved.
// The implementation is recorded where it is the reference one: checkpoints from before the choice existed
// (all fast) stay resumable.
nlohmann::json options_json(const TrainOptions& o, const DatasetRef& ref, const ResolvedConfig& config) {
  nlohmann::json j = {{"algo", o.algo},
          {"schedule", o.schedule},
          {"steps", o.steps},
          {"guidance_steps", o.guidance_steps},
          {"guidance_dir", o.guidance_dir},
          {"guidance_kind", config.guidance_kind},
          {"seed", o.seed},
          {"hyperparameters", config.table.values()},
          {"dataset_sha256", ref.sha256}};
  if (o.implementation != "fast") j["implementation"] = o.implementation;
  return j;
}

long peak_memory(torch::Device device) {
  return device.is_cuda() ? cuda_peak_allocated_bytes() : peak_rss_bytes();
}

void reset_peak_memory(torch::Device device) {
  if (device.is_cuda()) {
    cuda_reset_peak();
  } else {
    reset_peak_rss();
  }
}

// The options train_on refuses, each with the flag a user would fix, before anything is read or made.
void check_options(const TrainOptions& o, const DatasetRef& ref) {
  if (o.schedule != "joint" && o.schedule != "guidance-first")
    throw Error("--schedule must be joint or guidance-first, got '" + o.schedule + "'");
  if (o.steps <= 0) throw Error("--steps must be positive");
  if (o.log_every <= 0) throw Error("--log-every must be positive");
  if (o.checkpoint_every <= 0) throw Error("--checkpoint-every must be positive");
  if (o.stop_after < 0) throw Error("--stop-after must be positive");
  if (o.schedule == "joint" && !o.guidance_dir.empty())
    throw Error("--guidance DIR trains under a frozen guidance: use --schedule guidance-first");
  if (o.eval_every > 0 && o.evaluate && ref.env_id.empty())
    throw Error("--eval-every: the dataset names no env to evaluate on");
  if (o.schedule == "joint" && o.guidance_steps >= 0)
    throw Error("--guidance-steps applies to --schedule guidance-first only");
}

// The schedule's phases: joint (one), or guidance then diffusion (the guidance phase left out under a frozen
// --guidance DIR).
std::vector<PhasePlan> plan_phases(const TrainOptions& o) {
  std::vector<PhasePlan> plan;
  if (o.schedule == "joint") {
    plan.push_back({"joint", o.steps});
  } else {
    if (o.guidance_dir.empty()) plan.push_back({"guidance", o.guidance_steps < 0 ? o.steps : o.guidance_steps});
    plan.push_back({"diffusion", o.steps});
  }
  if (plan.front().steps <= 0) throw Error("--guidance-steps must be positive");
  return plan;
}

// check_options, then the plan: a member initializer of TrainingRun, so that nothing is built for bad options.
std::vector<PhasePlan> checked_plan(const TrainOptions& o, const DatasetRef& ref) {
  check_options(o, ref);
  return plan_phases(o);
}

long round_up(long value, long multiple) { return (value + multiple - 1) / multiple * multiple; }

}  // namespace

TrainingRun::TrainingRun(const datasets::Dataset& dataset, const DatasetRef& ref, const TrainOptions& o,
                         std::shared_ptr<const OfflineData> shared_data)
    : o_(o),
      ref_(ref),
      plan_(checked_plan(o, ref)),
      resolved_(resolve_config(o.algo, o.guidance_kind, ref.name, o.set)),
      config_(*resolved_.config),
      choice_(resolve_device(o.device)),
      device_(torch_device(choice_)),
      implementation_(parse_implementation(o.implementation)),
      context_(o.seed, device_),
      gradients_beside_(device_.is_cuda() && o.cuda_graphs && implementation_ == Implementation::Fast),
      out_(o.out),
      ckpt_(out_ / "checkpoint"),
      log_every_(o.log_every),
      ckpt_every_(round_up(o.checkpoint_every, o.log_every)),
      eval_every_(o.eval_every <= 0 ? 0 : round_up(o.eval_every, o.log_every)),
      progress_(!o.quiet && ::isatty(2)) {
  if (device_.is_cuda()) allow_tf32();
  const RunContext::Active active(context_);
  prepare_guidance(dataset);  // a frozen --guidance DIR, checked before the run folder is made
  check_resumable();          // before the folder is made
  folder_.emplace(out_);
  check_resumable();  // and under the lock
  had_checkpoint_ = fs::exists(ckpt_ / "state.json");
  if (!o.resume) start_afresh(out_, o.force);
  build_modules(dataset, std::move(shared_data));
  if (o.resume)
    restore_checkpoint();
  else if (guidance_->frozen())
    algorithm_->on_guidance_frozen();
}

// The data on the device and the modules, initialized from the run's own random streams (seeded with --seed).
void TrainingRun::build_modules(const datasets::Dataset& dataset, std::shared_ptr<const OfflineData> shared_data) {
  if (shared_data && shared_data->device != device_) throw Error("internal: a group's data on another device");
  data_ = shared_data ? std::move(shared_data) : std::make_shared<const OfflineData>(dataset, device_);
  const Normalizer normalizer = config_.normalize_obs ? Normalizer::from(data_->obs_mean, data_->obs_std, device_)
                                                      : Normalizer::identity(data_->obs_dim, device_);
  if (!guidance_) {
    GuidanceConfig guidance_config = config_.guidance;
    guidance_config.lr_decay_steps = config_.guidance_lr_cosine ? plan_.front().steps : 0;
    guidance_ = std::make_unique<GuidanceModule>(guidance_config, data_->obs_dim, data_->act_dim, normalizer,
                                                 reward_scale(guidance_config, *data_), device_,
                                                 implementation_);
  }
  DiffusionPolicyConfig policy_config = config_.policy;
  policy_config.adam.decay_steps = config_.policy_lr_cosine ? o_.steps : 0;
  policy_ = std::make_unique<DiffusionModel>(policy_config, data_->obs_dim, data_->act_dim, normalizer, device_,
                                             /*trainable=*/true, implementation_);
  algorithm_ = resolved_.algorithm->make(config_, *guidance_, *policy_, *data_);
  options_ = options_json(o_, ref_, resolved_);
}

// A frozen guidance module that cannot guide this data leaves nothing behind: it is read and its weights
// checked before the run folder exists.
void TrainingRun::prepare_guidance(const datasets::Dataset& dataset) {
  if (o_.guidance_dir.empty()) return;
  guidance_info_ = read_artifact(o_.guidance_dir, "guidance");
  ArtifactInfo self;
  self.dir = o_.out + "/diffusion";
  self.env_id = ref_.env_id;
  self.obs_dim = dataset.obs_dim;
  self.act_dim = dataset.act_dim;
  self.dataset_name = ref_.name;
  self.dataset_sha256 = ref_.sha256;
  result_.warnings = check_pairing(self, guidance_info_);
  guidance_ = load_guidance(o_.guidance_dir, device_, implementation_);  // loading draws no random numbers
}

void TrainingRun::check_resumable() const {
  if (!o_.resume || fs::exists(ckpt_ / "state.json")) return;
  if (fs::exists(out_ / "diffusion" / "manifest.json")) throw Error(o_.out + ": that run has already finished");
  throw Error(o_.out + ": no checkpoint to resume from");
}

// Evaluation during training: the current policy, with its guidance and without.
std::string TrainingRun::evaluate_now() {
  if (!o_.evaluate) return ",,";
  if (device_.is_cuda()) torch::cuda::synchronize();
  const fs::path snap = out_ / "eval_snapshot";
  write_artifact("eval_snapshot/diffusion", diffusion_manifest(), policy_->weights());
  std::string guidance_path = o_.guidance_dir;
  if (guidance_path.empty()) {
    guidance_path = (snap / "guidance").string();
    write_artifact("eval_snapshot/guidance", guidance_manifest(), guidance_->weights());
  }
  // The evaluation must not consume the training's random streams (resume equivalence).
  const torch::Tensor cpu_state = at::detail::getDefaultCPUGenerator().get_state();
  const auto t0 = std::chrono::steady_clock::now();
  const auto scores = o_.evaluate((snap / "diffusion").string(), guidance_path);
  eval_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  at::Generator cpu_generator = at::detail::getDefaultCPUGenerator();
  cpu_generator.set_state(cpu_state);
  policy_->train_mode(true);
  return "," + std::to_string(scores.first) + "," + std::to_string(scores.second);
}

bool TrainingRun::stop_here(const std::string& phase_name, long step) {
  if (o_.stop_after <= 0 || trained_now_ < o_.stop_after) return false;
  result_.stopped = true;
  result_.stopped_phase = phase_name;
  result_.stopped_phase_step = step;
  result_.phases = done_;
  return true;
}

namespace {

using StepsUpdate = std::function<std::vector<StepMetrics>(const std::vector<Batch>&)>;

// The update of one phase's steps: the algorithm's joint steps, or its guidance or diffusion step per batch.
StepsUpdate phase_update(Algorithm* algorithm, const std::string& phase) {
  auto one_by_one = [](auto step) {
    return [step](const std::vector<Batch>& batches) {
      std::vector<StepMetrics> m;
      for (const auto& b : batches) m.push_back(step(b));
      return m;
    };
  };
  if (phase == "guidance") return one_by_one([algorithm](const Batch& b) { return algorithm->guidance_step(b); });
  if (phase == "joint") return [algorithm](const std::vector<Batch>& batches) { return algorithm->joint_steps(batches); };
  return one_by_one([algorithm](const Batch& b) { return algorithm->diffusion_step(b); });
}

}  // namespace

// A phase's start: its metrics log, and its steps through captured graphs where they can run so. On CUDA several
// steps per captured graph; the steps between two host visits (logging, checkpoints, evaluation, the developer's
// trace) run in whole graphs where they can. The reference implementation runs every step eagerly.
void TrainingRun::begin_phase(const PhasePlan& phase) {
  reset_peak_memory(device_);
  policy_->train_mode(phase.name != "guidance");
  active_ = std::make_unique<ActivePhase>();
  ActivePhase& a = *active_;
  a.per_replay = captured_steps() ? graph_steps_per_replay(algorithm_->graph_steps()) : 1;
  a.steps = phase_steps(phase);
  a.start = a.interval_start = ActivePhase::Clock::now();
  a.interval_first = phase_step_ + 1;
  a.trace_prefix = profile_trace_prefix();
  a.stack_key = phase_stack_key(phase);
}

// The run's own steps of the phase: its batches and the algorithm's update, captured where the phase's steps are.
std::unique_ptr<GraphedSteps> TrainingRun::phase_steps(const PhasePlan& phase) const {
  const StepsUpdate update = phase_update(algorithm_.get(), phase.name);
  return std::make_unique<GraphedSteps>(
      [this, update](int count) {
        std::vector<Batch> batches;
        for (int k = 0; k < count; ++k) batches.push_back(data_->sample(config_.batch));
        active_->log.accumulate(update(batches));
      },
      active_->per_replay, captured_steps());
}

bool TrainingRun::captured_steps() const {
  return device_.is_cuda() && o_.cuda_graphs && implementation_ == Implementation::Fast;
}

// The next steps of the phase: up to a whole graph, never past a host visit (a metrics row, a checkpoint, the
// developer's trace edges).
int TrainingRun::step_count(const PhasePlan& phase) const {
  const ActivePhase& a = *active_;
  long stop = std::min(phase.steps, (phase_step_ / log_every_ + 1) * log_every_);
  if (a.trace_prefix)
    for (long edge : trace_edges())
      if (phase_step_ < edge) stop = std::min(stop, edge);
  return static_cast<int>(std::min<long>(a.per_replay, stop - phase_step_));
}

// After `count` steps of the phase, the visits due: a metrics row every --log-every steps (with an evaluation
// where due), checkpoints, and --stop-after. The order of these visits is what makes a resumed run the
// uninterrupted one.
TrainingRun::StepOutcome TrainingRun::steps_done(const PhasePlan& phase, int count) {
  ActivePhase& a = *active_;
  const long step = phase_step_ + count;
  a.log.count_steps(count);
  phase_step_ = step;
  trained_now_ += count;
  if (step % log_every_ != 0 && step != phase.steps) return StepOutcome::More;
  log_interval(phase, step);
  const double seconds = phase_seconds_before_ - eval_seconds_ +
                         std::chrono::duration<double>(ActivePhase::Clock::now() - a.start).count();
  if (step == phase.steps) {
    end_phase(phase, seconds);
    return StepOutcome::PhaseDone;
  }
  if (stop_here(phase.name, step)) {
    if (progress_) std::fprintf(stderr, "\n");
    save_checkpoint(seconds);
    return StepOutcome::Stopped;
  }
  if (step % ckpt_every_ == 0) save_checkpoint(seconds);
  return StepOutcome::More;
}

// The metrics row of the interval ending at `step` (one host sync), with an evaluation where one is due.
void TrainingRun::log_interval(const PhasePlan& phase, long step) {
  ActivePhase& a = *active_;
  const std::string note = had_checkpoint_ || fs::exists(ckpt_ / "state.json")
                               ? "the last good checkpoint is kept in " + ckpt_.string()
                               : "no checkpoint was written yet";
  const std::string row = a.log.flush(step, phase.name, a.interval_first, note);  // syncs the run's stream
  const auto now = ActivePhase::Clock::now();
  const double ms =
      std::chrono::duration<double, std::milli>(now - a.interval_start).count() / (step - a.interval_first + 1);
  const bool eval_now =
      o_.evaluate && eval_every_ > 0 && phase.name != "guidance" && (step % eval_every_ == 0 || step == phase.steps);
  rows_.push_back(row + (eval_now ? evaluate_now() : std::string(",,")) + "," + std::to_string(ms));
  a.interval_start = ActivePhase::Clock::now();
  a.interval_first = step + 1;
  if (progress_)
    std::fprintf(stderr, "\r%-9s step %ld/%ld %s  %.0f steps/s   ", phase.name.c_str(), step, phase.steps,
                 a.log.last_summary().c_str(), 1000.0 / ms);
}

// A finished phase's record; after the guidance phase the module is frozen and written at once.
void TrainingRun::end_phase(const PhasePlan& phase, double seconds) {
  const int stacked_runs = active_->stacked_runs;
  active_.reset();
  eval_seconds_ = 0;
  if (progress_) std::fprintf(stderr, "\n");
  PhaseRecord record;
  record.name = phase.name;
  record.steps = phase.steps;
  record.seconds = seconds;
  record.steps_per_s = phase.steps / std::max(seconds, 1e-9);
  record.peak_memory_bytes = peak_memory(device_);
  record.memory_kind = device_.is_cuda() ? "cuda-allocator-peak" : "cpu-peak-rss";
  record.runs_in_process = group_size_;
  record.stacked_runs = stacked_runs;
  done_.push_back(record);
  phase_step_ = 0;
  phase_seconds_before_ = 0;
  if (phase.name != "guidance") return;
  // Frozen from here on: what the diffusion phase needs, nothing to train.
  guidance_->freeze();
  write_artifact("guidance", guidance_manifest(), guidance_->weights());
  algorithm_->on_guidance_frozen();
}

// After a phase: the next one. Between the guidance and the diffusion phase a checkpoint at the boundary, where
// --stop-after may stop.
void TrainingRun::next_phase() {
  const bool after_guidance = plan_[phase_index_].name == "guidance";
  ++phase_index_;
  if (!after_guidance || phase_index_ >= plan_.size()) return;
  save_checkpoint(0);
  stopped_ = stop_here(plan_[phase_index_].name, 0);
}

int TrainingRun::steps_due() {
  if (stopped_ || phase_index_ >= plan_.size()) return 0;
  const RunContext::Active active(context_);
  if (!active_) begin_phase(plan_[phase_index_]);
  return step_count(plan_[phase_index_]);
}

bool TrainingRun::take_steps(int count) {
  const RunContext::Active active(context_);
  trace_before_steps();
  (*active_->steps)(count);
  trace_after_steps(count, "");
  return after_steps(count);
}

std::array<long, 2> TrainingRun::trace_edges() const {
  const long first = 200;
  return {first, first + round_up(20, active_->per_replay)};
}

void TrainingRun::trace_before_steps() const {
  if (active_->trace_prefix && phase_step_ == trace_edges()[0]) kernel_trace_start();
}

void TrainingRun::trace_after_steps(int count, const std::string& label) const {
  if (active_->trace_prefix && phase_step_ + count == trace_edges()[1])
    kernel_trace_stop(*active_->trace_prefix + "_" + label + plan_[phase_index_].name + ".json");
}

bool TrainingRun::took_steps(int count) {
  const RunContext::Active active(context_);
  return after_steps(count);
}

bool TrainingRun::after_steps(int count) {
  switch (steps_done(plan_[phase_index_], count)) {
    case StepOutcome::More: break;
    case StepOutcome::Stopped: stopped_ = true; break;
    case StepOutcome::PhaseDone: next_phase(); break;
  }
  return !stopped_ && phase_index_ < plan_.size();
}

bool TrainingRun::advance() {
  const int count = steps_due();
  return count > 0 && take_steps(count);
}

std::string TrainingRun::stack_key() const { return active_ ? active_->stack_key : ""; }

namespace {
// Numbers each run of a stack applies itself: its own optimizers (learning rate and its decay, Adam's constants,
// gradient clipping), EMA and reward scale, and what only inference reads. Runs that differ in these alone still
// stack: Diffusion-QL's gradient-norm limits differ per dataset, so a robot's datasets would not stack otherwise.
bool applied_by_each_run(const std::string& row) {
  static const char* const own[] = {"lr",       "lr_cosine", "beta1",           "beta2",      "eps",
                                    "weight_decay", "max_grad_norm", "ema_rate", "ema_start", "ema_every",
                                    "sample_with_ema", "candidates", "select", "scale_rewards"};
  const auto dot = row.find('.');
  if (dot == std::string::npos) return false;
  const std::string name = row.substr(dot + 1);
  for (const char* o : own)
    if (name == o) return true;
  return false;
}
}  // namespace

std::string TrainingRun::phase_stack_key(const PhasePlan& phase) const {
  if (!captured_steps()) return "";
  if (!stacked_steps_exist(o_.algo, phase.name, config_, device_)) return "";
  std::string key = o_.algo + " " + phase.name + " " + std::to_string(phase_index_) + " " + device_.str() + " " +
                    std::to_string(data_->obs_dim) + "x" + std::to_string(data_->act_dim);
  for (const auto& row : resolved_.table.rows())
    if (!applied_by_each_run(row.name)) key += " " + row.name + "=" + row.value;
  return key;
}

StackMember TrainingRun::stack_member(int stack_size) {
  if (!active_) throw Error("internal: a run stacked outside a phase");
  active_->steps = phase_steps(plan_[phase_index_]);
  active_->stacked_runs = std::max(active_->stacked_runs, stack_size);
  return {&context_, policy_.get(), guidance_.get(), data_.get(), &config_};
}

TrainResult TrainingRun::finish() {
  if (stopped_) return result_;
  if (phase_index_ < plan_.size()) throw Error("internal: finish() before the last phase ended");
  const RunContext::Active active(context_);
  return write_results();
}

TrainResult TrainingRun::run() {
  while (advance()) {
  }
  return finish();
}

TrainResult TrainingRun::write_results() {
  algorithm_->finish();
  if (o_.guidance_dir.empty() && plan_.front().name == "joint")
    write_artifact("guidance", guidance_manifest(), guidance_->weights());
  write_artifact("diffusion", diffusion_manifest(), policy_->weights());
  write_metrics();
  remove_tree(ckpt_.string());
  remove_tree((out_ / "eval_snapshot").string());
  result_.guidance_dir = o_.guidance_dir.empty() ? (out_ / "guidance").string() : o_.guidance_dir;
  result_.diffusion_dir = (out_ / "diffusion").string();
  result_.metrics_csv = (out_ / "metrics.csv").string();
  result_.phases = done_;
  return result_;
}

TrainResult train_on(const datasets::Dataset& dataset, const DatasetRef& ref, const TrainOptions& options) {
  return TrainingRun(dataset, ref, options).run();
}

}  // namespace modiff::agents
