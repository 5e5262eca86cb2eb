#pragma once
// What an algorithm does in each phase of training. The trainer owns the
// schedule (joint or guidance-first), the EMA rule, checkpoints and logging;
// an algorithm only says how one step updates the guidance module and the
// diffusion policy. A step never waits for the host (no .item(), no branch on
// device values), so that on CUDA it can be captured once and replayed.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "diffusion_policy.h"
#include "guidance.h"
#include "offline_data.h"

namespace modiff::agents {

// Device scalars of one step (no host sync); undefined where not applicable.
struct StepMetrics {
  torch::Tensor bc_loss, q_loss, critic_loss, value_loss, q_mean, q_std;
};

struct AlgorithmConfig {
  double eta = 1.0;  // dql: weight of the normalized Q-loss
};

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

  GuidanceModule& guidance_;
  DiffusionModel& policy_;
  const OfflineData& data_;
};

// idql | dql | cfg
std::unique_ptr<Algorithm> make_algorithm(const std::string& name, const AlgorithmConfig& config,
                                          GuidanceModule& guidance, DiffusionModel& policy, const OfflineData& data);

}  // namespace modiff::agents
