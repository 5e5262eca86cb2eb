// The training driver: builds the guidance module, the diffusion policy and
// the algorithm, runs the schedule's phases, logs metrics, checkpoints
// atomically (weights, optimizer state, EMA, RNG state), resumes, and writes
// the two artifacts with their manifests.
#include <unistd.h>

#include <chrono>
#include <optional>
#include <functional>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "algos/algorithm.h"
#include "io/artifact_io.h"
#include "modiff/agents/artifact.h"
#include "modiff/behavior/behavior_suite.h"
#include "modiff/torch/torch_support.h"
#include "modiff/agents/train.h"
#include "modiff/common/atomic_file.h"
#include "modiff/common/environment.h"
#include "modiff/common/error.h"
#include "modiff/common/json_difference.h"
#include "modiff/common/peak_memory.h"
#include "modiff/common/file_lock.h"
#include "modiff/common/remove_tree.h"
#include "modiff/datasets/data_home.h"
#include "modiff/datasets/sha256.h"
#include "modiff/envs/env_spec.h"
#include "runtime/cuda_support.h"

namespace modiff::agents {

namespace fs = std::filesystem;

TrainResult train(const std::string& dataset, const TrainOptions& options) {
  const std::string path = behavior::resolve_dataset(dataset, options.quiet);
  const datasets::Dataset data = datasets::read_d4rl_file(path);
  DatasetRef ref;
  ref.name = data.attributes.name.empty() ? fs::path(path).stem().string() : data.attributes.name;
  ref.sha256 = datasets::sha256_file(path);
  ref.env_id = data.attributes.env_id;
  return train_on(data, ref, options);
}

namespace {

// The run folder, locked while this run writes it: a second `train` into the same --out stops with one line
// naming the first. A folder this run made and left empty (it failed before writing anything) is removed again.
class RunFolder {
 public:
  explicit RunFolder(const fs::path& out) : out_(out), made_here_(!fs::exists(out)) {
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) throw Error("cannot create run folder " + out.string() + ": " + ec.message());
    lock_.emplace((out / kFolderLockFile).string(), "run folder " + out.string());
  }
  ~RunFolder() {
    lock_.reset();  // removes the lock file
    std::error_code ec;
    if (made_here_ && fs::is_empty(out_, ec) && !ec) fs::remove(out_, ec);
  }
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;

 private:
  fs::path out_;
  bool made_here_;
  std::optional<ExclusiveLock> lock_;
};

// What a run writes into its folder; --force removes these (and only these) before a new run starts.
const char* const kRunEntries[] = {"guidance", "diffusion", "checkpoint", "eval_snapshot", "metrics.csv"};

// A new run needs an empty folder: an earlier run (or anything else) in it is kept unless --force says to
// replace the earlier run.
void start_afresh(const fs::path& out, bool force) {
  std::vector<std::string> present;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().filename() != kFolderLockFile) present.push_back(e.path().filename().string());
  if (present.empty()) return;
  if (!force)
    throw Error(out.string() + " is not empty (it holds " + present.front() +
                (present.size() > 1 ? " and " + std::to_string(present.size() - 1) + " more" : std::string()) +
                "): use --resume to continue its run, --force to replace it, or another --out");
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    for (const char* entry : kRunEntries)
      if (name == entry || name.rfind(std::string(entry) + ".", 0) == 0) remove_tree(e.path().string());
  }
}

// What a resumed run must share with the checkpointed one: the schedule, the seed, the data and every
// hyperparameter as resolved.
nlohmann::json options_json(const TrainOptions& o, const DatasetRef& ref, const ResolvedConfig& config) {
  return {{"algo", o.algo},
          {"schedule", o.schedule},
          {"steps", o.steps},
          {"guidance_steps", o.guidance_steps},
          {"guidance_dir", o.guidance_dir},
          {"guidance_kind", config.guidance_kind},
          {"seed", o.seed},
          {"hyperparameters", config.table.values()},
          {"dataset_sha256", ref.sha256}};
}

// Sums of each metric over a logging interval, on the device.
class MetricsLog {
 public:
  static constexpr const char* kHeader =
      "step,phase,bc_loss,q_loss,critic_loss,value_loss,q_mean,q_std,eval_guided,eval_unguided,step_ms";

  // Adds the values of consecutive steps in place (part of the steps, so graph-capturable): one
  // stack, one sum and one add for all of them.
  void accumulate(const std::vector<StepMetrics>& steps) {
    std::vector<torch::Tensor> present;
    present_.clear();
    for (const auto& m : steps) {
      const torch::Tensor values[] = {m.bc_loss, m.q_loss, m.critic_loss, m.value_loss, m.q_mean, m.q_std};
      const bool first = present.empty();
      for (int k = 0; k < 6; ++k) {
        if (!values[k].defined()) continue;
        present.push_back(values[k].reshape({}));
        if (first) present_.push_back(k);
      }
    }
    if (present.empty()) return;
    auto sum = torch::stack(present).view({static_cast<long>(steps.size()), -1}).sum(0);
    if (!sums_.defined()) sums_ = torch::zeros_like(sum);
    sums_.add_(sum);
  }
  void count_steps(long n) { count_ += n; }

  // Averages since the last flush as a CSV row without its step_ms (one host
  // sync); throws on a non-finite loss.
  std::string flush(long step, const std::string& phase, long first_step, const std::string& ckpt_note) {
    std::ostringstream row;
    row << step << "," << phase;
    static const char* names[] = {"bc_loss", "q_loss", "critic_loss", "value_loss", "q_mean", "q_std"};
    double host[6];
    bool have[6] = {false, false, false, false, false, false};
    if (sums_.defined()) {
      auto all = sums_.to(torch::kCPU).to(torch::kFloat64);
      for (size_t i = 0; i < present_.size(); ++i) {
        host[present_[i]] = all[static_cast<long>(i)].item<double>();
        have[present_[i]] = true;
      }
    }
    last_.clear();
    for (int k = 0; k < 6; ++k) {
      row << ",";
      if (!have[k]) continue;
      const double v = host[k] / count_;
      if (!std::isfinite(v))
        throw Error(std::string("non-finite ") + names[k] + " between steps " + std::to_string(first_step) + " and " +
                    std::to_string(step) + " of the " + phase + " phase; " + ckpt_note);
      row << v;
      last_ += std::string(" ") + names[k] + " " + std::to_string(v).substr(0, 8);
    }
    if (sums_.defined()) sums_.zero_();
    count_ = 0;
    return row.str();
  }

  const std::string& last_summary() const { return last_; }

 private:
  torch::Tensor sums_;         // [number of metrics the step reports]
  std::vector<int> present_;  // which of the six, in order
  long count_ = 0;
  std::string last_;
};

struct PhasePlan {
  std::string name;  // joint | guidance | diffusion
  long steps;
};

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

nlohmann::json phases_json(const std::vector<PhaseRecord>& phases) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& p : phases)
    a.push_back({{"name", p.name}, {"steps", p.steps}, {"seconds", p.seconds}, {"steps_per_s", p.steps_per_s},
                 {"peak_memory_bytes", p.peak_memory_bytes}, {"memory_kind", p.memory_kind}});
  return a;
}

std::vector<PhaseRecord> phases_from_json(const nlohmann::json& a) {
  std::vector<PhaseRecord> v;
  for (const auto& p : a)
    v.push_back({p.at("name"), p.at("steps"), p.at("seconds"), p.at("steps_per_s"), p.at("peak_memory_bytes"),
                 p.at("memory_kind")});
  return v;
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

}  // namespace

TrainResult train_on(const datasets::Dataset& dataset, const DatasetRef& ref, const TrainOptions& o) {
  check_options(o, ref);
  const std::vector<PhasePlan> plan = plan_phases(o);
  const ResolvedConfig resolved = resolve_config(o.algo, o.guidance_kind, ref.name, o.set);
  const AlgorithmConfig& config = *resolved.config;
  const DeviceChoice choice = resolve_device(o.device);
  const torch::Device device = torch_device(choice);
  if (device.is_cuda()) allow_tf32();
  set_gradients_beside(device.is_cuda() && o.cuda_graphs);  // weight gradients on side streams (cuda_support.h)

  const fs::path out(o.out), ckpt = out / "checkpoint";
  // A frozen guidance is checked before the run folder is made: a module that cannot guide this data leaves
  // nothing behind.
  ArtifactInfo guidance_info;
  TrainResult result;
  std::unique_ptr<GuidanceModule> guidance;
  if (!o.guidance_dir.empty()) {
    guidance_info = read_artifact(o.guidance_dir, "guidance");
    ArtifactInfo self;
    self.dir = o.out + "/diffusion";
    self.env_id = ref.env_id;
    self.obs_dim = dataset.obs_dim;
    self.act_dim = dataset.act_dim;
    self.dataset_name = ref.name;
    self.dataset_sha256 = ref.sha256;
    result.warnings = check_pairing(self, guidance_info);
    guidance = load_guidance(o.guidance_dir, device);  // its weights checked too; loading draws no random numbers
  }
  auto check_resumable = [&] {
    if (!o.resume || fs::exists(ckpt / "state.json")) return;
    if (fs::exists(out / "diffusion" / "manifest.json")) throw Error(o.out + ": that run has already finished");
    throw Error(o.out + ": no checkpoint to resume from");
  };
  check_resumable();  // before the folder is made
  const RunFolder run_folder(out);
  check_resumable();  // and under the lock
  const bool has_checkpoint = fs::exists(ckpt / "state.json");
  if (!o.resume) start_afresh(out, o.force);

  // Data and modules.
  const OfflineData data(dataset, device);
  const Normalizer normalizer = config.normalize_obs ? Normalizer::from(data.obs_mean, data.obs_std, device)
                                                : Normalizer::identity(data.obs_dim, device);
  torch::manual_seed(o.seed);
  if (!guidance) {
    GuidanceConfig guidance_config = config.guidance;
    guidance_config.lr_decay_steps = config.guidance_lr_cosine ? plan.front().steps : 0;
    guidance = std::make_unique<GuidanceModule>(guidance_config, data.obs_dim, data.act_dim, normalizer,
                                                reward_scale(guidance_config, data), device);
  }
  DiffusionPolicyConfig policy_config = config.policy;
  policy_config.adam.decay_steps = config.policy_lr_cosine ? o.steps : 0;
  DiffusionModel policy(policy_config, data.obs_dim, data.act_dim, normalizer, device, /*trainable=*/true);
  auto algorithm = resolved.algorithm->make(config, *guidance, policy, data);

  const long log_every = o.log_every;
  const long ckpt_every = (o.checkpoint_every + log_every - 1) / log_every * log_every;

  // State that checkpoints carry besides tensors.
  size_t phase_index = 0;
  long phase_step = 0;
  double phase_seconds_before = 0;
  std::vector<PhaseRecord> done;
  std::vector<std::string> rows;
  const nlohmann::json options = options_json(o, ref, resolved);

  auto all_tensors = [&] {
    NamedTensors t;
    for (auto& [name, v] : guidance->state()) t.push_back({"guidance." + name, v});
    for (auto& [name, v] : policy.state()) t.push_back({"policy." + name, v});
    return t;
  };
  auto write_metrics = [&] {
    std::string csv = std::string(MetricsLog::kHeader) + "\n";
    for (const auto& r : rows) csv += r + "\n";
    write_text_atomically((out / "metrics.csv").string(), csv);
  };
  auto save_checkpoint = [&](double phase_seconds) {
    write_directory_atomically(ckpt.string(), [&](const std::string& dir) {
      auto tensors = all_tensors();
      tensors.push_back({"rng_cpu", at::detail::getDefaultCPUGenerator().get_state()});
      if (device.is_cuda()) tensors.push_back({"rng_cuda", at::globalContext().defaultGenerator(device).get_state()});
      save_tensors(dir + "/state.pt", tensors);
      nlohmann::json state = {{"options", options},       {"phase_index", phase_index},
                              {"phase_step", phase_step}, {"phase_seconds", phase_seconds},
                              {"done_phases", phases_json(done)}, {"rows", rows},
                              {"labels", {policy.label_mean, policy.label_std, policy.target_label}}};
      write_text_atomically(dir + "/state.json", state.dump(1) + "\n");
    });
    write_metrics();
  };

  if (o.resume) {
    nlohmann::json state;
    try {
      std::ifstream(ckpt / "state.json") >> state;
    } catch (const std::exception&) {
      throw Error((ckpt / "state.json").string() + ": not valid JSON");
    }
    if (const JsonDifference d = first_difference(state.at("options"), options); d.found())
      throw Error("--resume: " + d.path + " differs from the checkpointed run (" + d.was.dump() + " there, " +
                  d.now.dump() + " now)");
    phase_index = state.at("phase_index");
    phase_step = state.at("phase_step");
    phase_seconds_before = state.at("phase_seconds");
    done = phases_from_json(state.at("done_phases"));
    rows = state.at("rows").get<std::vector<std::string>>();
    if (phase_index > 0 && plan[0].name == "guidance") guidance->freeze();
    auto tensors = all_tensors();
    torch::Tensor rng_cpu = torch::empty({0}, torch::kUInt8), rng_cuda = torch::empty({0}, torch::kUInt8);
    {
      torch::serialize::InputArchive archive;
      archive.load_from((ckpt / "state.pt").string());
      archive.read("rng_cpu", rng_cpu);
      if (device.is_cuda()) archive.try_read("rng_cuda", rng_cuda);
    }
    load_tensors_into((ckpt / "state.pt").string(), tensors);
    at::Generator cpu_generator = at::detail::getDefaultCPUGenerator();  // a handle: setting its state sets the default's
    cpu_generator.set_state(rng_cpu);
    if (device.is_cuda() && rng_cuda.numel() > 0) {
      at::Generator cuda_generator = at::globalContext().defaultGenerator(device);
      cuda_generator.set_state(rng_cuda);
    }
    if (guidance->frozen() && phase_index < plan.size() && plan[phase_index].name == "diffusion")
      algorithm->on_guidance_frozen();
    const auto labels = state.at("labels");
    policy.label_mean = labels.at(0);
    policy.label_std = labels.at(1);
    policy.target_label = labels.at(2);
  } else if (guidance->frozen()) {
    algorithm->on_guidance_frozen();
  }

  auto guidance_manifest = [&] {
    nlohmann::json m = {{"format", "modiff-artifact-1"},
                        {"kind", "guidance"},
                        {"algorithm", guidance->config().kind},
                        {"env_id", ref.env_id},
                        {"obs_dim", data.obs_dim},
                        {"act_dim", data.act_dim},
                        {"observation_normalization", to_json(guidance->normalizer())},
                        {"reward_scale", guidance->reward_scale()},
                        {"has_v", guidance->has_v()},
                        {"dataset", {{"name", ref.name}, {"sha256", ref.sha256}, {"transitions", data.size}}},
                        {"seed", o.seed},
                        {"steps", plan.front().steps},
                        {"schedule", o.schedule},
                        {"trained_beside", o.algo},
                        {"hyperparameters", to_json(guidance->config())},
                        {"parameters", guidance->parameter_count()},
                        {"training", {{"device", choice.description}, {"batch", config.batch}, {"phases", phases_json(done)}}}};
    return m;
  };
  auto write_artifact = [&](const std::string& name, const nlohmann::json& manifest, const NamedTensors& weights) {
    write_directory_atomically((out / name).string(), [&](const std::string& dir) {
      save_tensors(dir + "/weights.pt", weights);
      write_text_atomically(dir + "/manifest.json", manifest.dump(2) + "\n");
    });
  };

  auto diffusion_manifest = [&] {
    nlohmann::json trained_with = o.guidance_dir.empty()
                                      ? nlohmann::json{{"dir", (out / "guidance").string()}, {"algorithm", guidance->config().kind}, {"seed", o.seed},
                                                       {"dataset_sha256", ref.sha256}}
                                      : nlohmann::json{{"dir", o.guidance_dir}, {"algorithm", guidance_info.algorithm},
                                                       {"seed", guidance_info.seed}, {"dataset_sha256", guidance_info.dataset_sha256}};
    nlohmann::json manifest = {{"format", "modiff-artifact-1"},
                               {"kind", "diffusion"},
                               {"algorithm", o.algo},
                               {"env_id", ref.env_id},
                               {"obs_dim", data.obs_dim},
                               {"act_dim", data.act_dim},
                               {"observation_normalization", to_json(policy.normalizer())},
                               {"dataset", {{"name", ref.name}, {"sha256", ref.sha256}, {"transitions", data.size}}},
                               {"seed", o.seed},
                               {"steps", o.steps},
                               {"schedule", o.guidance_dir.empty() ? o.schedule : "guidance-from-dir"},
                               {"guidance", trained_with},
                               {"hyperparameters", to_json(policy.config())},
                               {"eta", resolved.table.values().value("eta", 0.0)},
                               {"algorithm_hyperparameters", resolved.table.values()},
                               {"parameters", policy.parameter_count()},
                               {"training", {{"device", choice.description}, {"batch", config.batch}, {"phases", phases_json(done)}}}};
    if (policy.conditioned())
      manifest["labels"] = {{"mean", policy.label_mean}, {"std", policy.label_std}, {"target", policy.target_label},
                            {"source", guidance->has_v() ? "advantage" : "q"}};
    return manifest;
  };
  // Evaluation during training: the current policy, with its guidance and without.
  double eval_seconds = 0;  // of the current phase: not training time
  const long eval_every = o.eval_every <= 0 ? 0 : (o.eval_every + log_every - 1) / log_every * log_every;
  auto evaluate_now = [&]() -> std::string {
    if (!o.evaluate) return ",,";
    if (device.is_cuda()) torch::cuda::synchronize();
    const fs::path snap = out / "eval_snapshot";
    write_artifact("eval_snapshot/diffusion", diffusion_manifest(), policy.weights());
    std::string guidance_path = o.guidance_dir;
    if (guidance_path.empty()) {
      guidance_path = (snap / "guidance").string();
      write_artifact("eval_snapshot/guidance", guidance_manifest(), guidance->weights());
    }
    // The evaluation must not consume the training's random streams (resume equivalence).
    const torch::Tensor cpu_state = at::detail::getDefaultCPUGenerator().get_state();
    const auto t0 = std::chrono::steady_clock::now();
    const auto scores = o.evaluate((snap / "diffusion").string(), guidance_path);
    eval_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    at::Generator cpu_generator = at::detail::getDefaultCPUGenerator();
    cpu_generator.set_state(cpu_state);
    policy.train_mode(true);
    return "," + std::to_string(scores.first) + "," + std::to_string(scores.second);
  };

  const bool progress = !o.quiet && ::isatty(2);
  long trained_now = 0;  // steps of this invocation, for stop_after
  auto stop_here = [&](const std::string& phase_name, long step) {
    if (o.stop_after <= 0 || trained_now < o.stop_after) return false;
    result.stopped = true;
    result.stopped_phase = phase_name;
    result.stopped_phase_step = step;
    result.phases = done;
    return true;
  };
  for (; phase_index < plan.size(); ++phase_index) {
    const PhasePlan& phase = plan[phase_index];
    reset_peak_memory(device);
    policy.train_mode(phase.name != "guidance");
    MetricsLog log;
    std::function<std::vector<StepMetrics>(const std::vector<Batch>&)> update;
    auto one_by_one = [](auto step) {
      return [step](const std::vector<Batch>& batches) {
        std::vector<StepMetrics> m;
        for (const auto& b : batches) m.push_back(step(b));
        return m;
      };
    };
    if (phase.name == "guidance") {
      update = one_by_one([&](const Batch& b) { return algorithm->guidance_step(b); });
    } else if (phase.name == "joint") {
      update = [&](const std::vector<Batch>& batches) { return algorithm->joint_steps(batches); };
    } else {
      update = one_by_one([&](const Batch& b) { return algorithm->diffusion_step(b); });
    }
    // On CUDA several steps per captured graph; the steps between two host visits (logging,
    // checkpoints, evaluation, the developer's trace) run in whole graphs where they can.
    const bool graphs = device.is_cuda() && o.cuda_graphs;
    const int per_replay = graphs ? graph_steps_per_replay(algorithm->graph_steps()) : 1;
    GraphedSteps train_steps(
        [&](int count) {
          std::vector<Batch> batches;
          for (int k = 0; k < count; ++k) batches.push_back(data.sample(config.batch));
          log.accumulate(update(batches));
        },
        per_replay, graphs);
    auto phase_start = std::chrono::steady_clock::now();
    auto interval_start = phase_start;
    long interval_first = phase_step + 1;
    const auto trace_prefix = profile_trace_prefix();
    const long trace_first = 200, trace_last = trace_first + (20 + per_replay - 1) / per_replay * per_replay;
    for (; phase_step < phase.steps;) {
      long stop = std::min(phase.steps, (phase_step / log_every + 1) * log_every);
      if (trace_prefix)
        for (long edge : {trace_first, trace_last})
          if (phase_step < edge) stop = std::min(stop, edge);
      const int count = static_cast<int>(std::min<long>(per_replay, stop - phase_step));
      if (trace_prefix && phase_step == trace_first) kernel_trace_start();
      train_steps(count);
      const long step = phase_step + count;
      if (trace_prefix && step == trace_last) kernel_trace_stop(*trace_prefix + "_" + phase.name + ".json");
      log.count_steps(count);
      phase_step = step;
      trained_now += count;
      if (step % log_every != 0 && step != phase.steps) continue;
      const std::string note = has_checkpoint || fs::exists(ckpt / "state.json")
                                   ? "the last good checkpoint is kept in " + ckpt.string()
                                   : "no checkpoint was written yet";
      const std::string row = log.flush(step, phase.name, interval_first, note);  // syncs the device
      const auto now = std::chrono::steady_clock::now();
      const double ms = std::chrono::duration<double, std::milli>(now - interval_start).count() / (step - interval_first + 1);
      const bool eval_now =
          o.evaluate && eval_every > 0 && phase.name != "guidance" && (step % eval_every == 0 || step == phase.steps);
      rows.push_back(row + (eval_now ? evaluate_now() : std::string(",,")) + "," + std::to_string(ms));
      interval_start = std::chrono::steady_clock::now();
      interval_first = step + 1;
      const double seconds =
          phase_seconds_before + std::chrono::duration<double>(now - phase_start).count() - eval_seconds;
      if (progress)
        std::fprintf(stderr, "\r%-9s step %ld/%ld %s  %.0f steps/s   ", phase.name.c_str(), step, phase.steps,
                     log.last_summary().c_str(), 1000.0 / ms);
      if (step == phase.steps) continue;
      if (stop_here(phase.name, step)) {
        if (progress) std::fprintf(stderr, "\n");
        save_checkpoint(seconds);
        return result;
      }
      if (step % ckpt_every == 0) save_checkpoint(seconds);
    }
    const double seconds = phase_seconds_before - eval_seconds +
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - phase_start).count();
    eval_seconds = 0;
    if (progress) std::fprintf(stderr, "\n");
    PhaseRecord record;
    record.name = phase.name;
    record.steps = phase.steps;
    record.seconds = seconds;
    record.steps_per_s = phase.steps / std::max(seconds, 1e-9);
    record.peak_memory_bytes = peak_memory(device);
    record.memory_kind = device.is_cuda() ? "cuda-allocator-peak" : "cpu-peak-rss";
    done.push_back(record);
    phase_step = 0;
    phase_seconds_before = 0;
    if (phase.name == "guidance") {
      // Frozen from here on: what the diffusion phase needs, nothing to train.
      guidance->freeze();
      write_artifact("guidance", guidance_manifest(), guidance->weights());
      algorithm->on_guidance_frozen();
      if (phase_index + 1 < plan.size()) {
        ++phase_index;
        save_checkpoint(0);
        if (stop_here(plan[phase_index].name, 0)) return result;
        --phase_index;
      }
    }
  }

  algorithm->finish();
  if (o.guidance_dir.empty() && plan.front().name == "joint") write_artifact("guidance", guidance_manifest(), guidance->weights());
  write_artifact("diffusion", diffusion_manifest(), policy.weights());
  write_metrics();
  remove_tree(ckpt.string());
  remove_tree((out / "eval_snapshot").string());

  result.guidance_dir = o.guidance_dir.empty() ? (out / "guidance").string() : o.guidance_dir;
  result.diffusion_dir = (out / "diffusion").string();
  result.metrics_csv = (out / "metrics.csv").string();
  result.phases = done;
  return result;
}

}  // namespace modiff::agents
