#pragma once
// What an algorithm is: its numbers (a config struct derived from
// AlgorithmConfig, filled by its `describe` table) and how one step updates
// the guidance module and the diffusion policy in each phase. The trainer owns
// the schedule (joint or guidance-first), checkpoints and logging. A step never
// waits for the host (no .item(), no branch on device values), so that on CUDA
// it can be captured once and replayed.
//
// Adding an algorithm: one file in algos/ (its XxxConfig, describe, Algorithm
// subclass) and one line in the table of algorithm.cpp (docs/architecture.md).
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "algos/hyperparameters.h"
#include "modules/diffusion_policy.h"
#include "modules/guidance.h"
#include "nets/offline_data.h"

namespace modiff::agents {

// Every number of a training run. An algorithm's config derives from this and adds its own fields; its
// `describe` sets every field, the guidance's included (through the guidance kind's table), with the
// reference value and where it comes from.
struct AlgorithmConfig {
  int batch = 0;
  bool normalize_obs = false;       // standardize observations with the dataset's statistics (both modules)
  bool policy_lr_cosine = false;    // cosine decay of the policy's learning rate over the run's diffusion steps
  bool guidance_lr_cosine = false;  // the guidance's over its own training steps
  DiffusionPolicyConfig policy;
  GuidanceConfig guidance;

  virtual ~AlgorithmConfig() = default;
  // The algorithm's own numbers (batch, policy, update rule). `dataset` is the dataset's name, for numbers
  // the reference sets per dataset.
  virtual void describe(Hyperparameters& table, const std::string& dataset) = 0;
};

// The numbers of a guidance module of `kind`, as the algorithm that introduced it trains it.
using GuidanceTable = void (*)(Hyperparameters& table, AlgorithmConfig& config, const std::string& dataset);
void describe_iql_guidance(Hyperparameters& table, AlgorithmConfig& config, const std::string& dataset);     // idql.cpp
void describe_twin_q_guidance(Hyperparameters& table, AlgorithmConfig& config, const std::string& dataset);  // dql.cpp
// Diffusion-QL's gradient-norm limit for a dataset, and where it comes from (dql.cpp; EDP's hps.py has the same).
double diffusion_ql_grad_norm(const std::string& dataset);
extern const char* const kDiffusionQlGradNormSource;

// Device scalars of one step (no host sync); undefined where not applicable.
struct StepMetrics {
  torch::Tensor bc_loss, q_loss, critic_loss, value_loss, q_mean, q_std;
};
// A guidance update's metrics as a step's (the policy's fields undefined).
StepMetrics guidance_step_metrics(const GuidanceMetrics& g);

class Algorithm {
 public:
  Algorithm(GuidanceModule& guidance, DiffusionModel& policy, const OfflineData& data)
      : guidance_(guidance), policy_(policy), data_(data) {}
  virtual ~Algorithm() = default;

  // joint schedule: guidance and diffusion updated together, as the published algorithm does.
  virtual StepMetrics joint_step(const Batch& batch) = 0;
  // Consecutive joint steps, one per batch (captured together in one CUDA graph). By default one
  // joint_step after the other; an algorithm whose two updates never meet may run them as two chains.
  virtual std::vector<StepMetrics> joint_steps(const std::vector<Batch>& batches);
  // Steps per captured CUDA graph that suit this algorithm (MODIFF_GRAPH_STEPS overrides it): one, unless
  // consecutive steps gain from being captured together.
  virtual int graph_steps() const { return 1; }
  // The guidance alone (guidance-first, phase 1): from the data only.
  StepMetrics guidance_step(const Batch& batch);
  // Once, when the guidance is frozen and before diffusion training: precompute
  // what a frozen guidance allows (cfg: every row's label).
  virtual void on_guidance_frozen() {}
  // Diffusion under the frozen guidance (guidance-first, phase 2, or --guidance DIR).
  virtual StepMetrics diffusion_step(const Batch& batch) = 0;
  // After the last step: anything the saved policy needs (cfg: label statistics).
  virtual void finish() {}

 protected:
  // One behavior-cloning update of the diffusion policy (optionally conditioned).
  torch::Tensor bc_update(const Batch& batch, const torch::Tensor& cond = {});
  // Updates that share no tensor: in the fast implementation on CUDA, parallel branches (cuda_support.h);
  // otherwise one after the other, in order.
  void concurrently(const std::vector<std::function<void()>>& branches);

  GuidanceModule& guidance_;
  DiffusionModel& policy_;
  const OfflineData& data_;
};

class StackedSteps;  // algos/stacked_steps.h
struct StackMember;

// One registered algorithm: its name, the guidance kind it trains unless told otherwise, its config
// and its update steps.
struct AlgorithmEntry {
  const char* name;
  const char* guidance_kind;
  std::unique_ptr<AlgorithmConfig> (*config)();
  std::unique_ptr<Algorithm> (*make)(const AlgorithmConfig& config, GuidanceModule& guidance, DiffusionModel& policy,
                                     const OfflineData& data);
  // Its joint and diffusion phases for a stack of runs on CUDA (algos/stacked_steps.h), where it has them: whether
  // runs of `config` in `phase` can be stacked, and the stacked steps of such runs.
  bool (*stacks)(const std::string& phase, const AlgorithmConfig& config, torch::Device device) = nullptr;
  std::unique_ptr<StackedSteps> (*make_stacked)(const std::string& phase,
                                                const std::vector<StackMember>& members) = nullptr;
};
const std::vector<AlgorithmEntry>& algorithms();
const AlgorithmEntry& find_algorithm(const std::string& name);  // throws, naming the known ones

// An algorithm's config for a run: its table's reference values, the guidance kind's table (empty
// `guidance_kind`: the algorithm's own), then the overrides in order.
struct ResolvedConfig {
  const AlgorithmEntry* algorithm = nullptr;
  std::string guidance_kind;
  std::unique_ptr<AlgorithmConfig> config;
  Hyperparameters table;  // points into *config
};
ResolvedConfig resolve_config(const std::string& algo, const std::string& guidance_kind, const std::string& dataset,
                              const std::vector<std::string>& overrides);

}  // namespace modiff::agents
