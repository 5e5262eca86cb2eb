#pragma once
// A group's runs trained as one (train/group.cpp): where K runs of one algorithm, phase and network shapes train
// side by side on one GPU, their networks are stacked (nets/stacked.h) and every layer of every update is one
// batched product for all K, so that each kernel does the work of K runs instead of K small kernels contending
// for the GPU (docs/benchmarks.md, "Many runs at once").
//
// Each run stays the run it would be alone: it draws its batches, noise, steps and dropout from its own random
// streams in the order its own steps draw them (RunContext::Draws), its parameters, optimizer state and EMA
// stay its own (moved into a row of the stack), and its metrics go to its own log. On CUDA the stacked products
// add in another order than a run's own kernels, so a stacked run agrees with the run alone to floating-point
// tolerance (tests/agents/test_train.cpp, "[group][cuda]"); on the CPU runs are never stacked.
//
// The guidance phase is the same for every algorithm (Algorithm::guidance_step) and is stacked here; an
// algorithm's joint and diffusion phases are stacked in its own file (AlgorithmEntry::stacks), from the pieces
// below: the members' batches and draws, their critics' updates, their policies' losses and chains.
#include <torch/torch.h>

#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "algos/algorithm.h"
#include "modules/diffusion_policy.h"
#include "modules/guidance.h"
#include "nets/offline_data.h"
#include "nets/stacked.h"
#include "runtime/run_context.h"

namespace modiff::agents {

// One run of a stack: what it trains, with which numbers, and where its draws come from.
struct StackMember {
  RunContext* context;
  DiffusionModel* policy;
  GuidanceModule* guidance;
  const OfflineData* data;
  const AlgorithmConfig* config;  // the same numbers for every member of a stack (TrainingRun::stack_key)
};

class StackedSteps {
 public:
  virtual ~StackedSteps() = default;
  // `count` consecutive steps of every member: metrics[member][step], device scalars. No host sync, so that the
  // steps can be captured in one CUDA graph.
  virtual std::vector<std::vector<StepMetrics>> steps(int count) = 0;
};

// Whether `algorithm`'s `phase` (joint | guidance | diffusion) has stacked steps for runs of `config` on `device`
// (CUDA only: on the CPU the runs of a group take their own steps, bit-identical to the runs alone).
bool stacked_steps_exist(const std::string& algorithm, const std::string& phase, const AlgorithmConfig& config,
                         torch::Device device);
// The stacked steps of the members (all of one algorithm, phase and hyperparameters, on one CUDA device); moves
// their parameters into the stack's rows.
std::unique_ptr<StackedSteps> make_stacked_steps(const std::string& algorithm, const std::string& phase,
                                                 const std::vector<StackMember>& members);

// ---- The pieces of stacked steps ([K, ...] tensors, row k the k-th member's) ----

// Stacked steps that make one stacked step from one stacked batch: `step` returns [K] tensors in each field it
// fills. Draws each member's batches for `count` steps first, as a run's own graph does.
class StepByStep : public StackedSteps {
 public:
  explicit StepByStep(const std::vector<StackMember>& members) : members_(members) {}
  std::vector<std::vector<StepMetrics>> steps(int count) override;

 protected:
  virtual StepMetrics step(const Batch& batch) = 0;
  const std::vector<StackMember> members_;
};

// metrics[member][step] from each step's stacked metrics ([K] tensors).
std::vector<std::vector<StepMetrics>> per_member(const std::vector<StepMetrics>& stacked, size_t members);
// Each member's batches for `count` steps, drawn from its own stream as its trainer draws them (a graph's
// batches before its steps), gathered as [K, B, ...] columns.
std::vector<Batch> stacked_batches(const std::vector<StackMember>& members, int count);
// Each member's draws from its own streams: `draw()` runs once per member, with that member's generators
// current, and returns its tensors in the order its own step draws them; each is returned stacked ([K, ...]).
std::vector<torch::Tensor> stacked_draws(const std::vector<StackMember>& members,
                                         const std::function<std::vector<torch::Tensor>()>& draw);
// One run's draws for one sample of `ddpm`, as Ddpm::sample makes them, each [batch, act] (the sampler's own calls,
// so that the same generator gives the same numbers): a chain's start and one per step but the last ([T, batch,
// act]), or the ODE solver's start alone ([1, batch, act]).
torch::Tensor draw_sampling_noise(const Ddpm& ddpm, long batch, long act_dim, const torch::TensorOptions& options);
// The draws of one run's noise-prediction loss (Ddpm::loss): the steps [batch] (long), then the noise [batch, act].
std::vector<torch::Tensor> draw_noising(int steps, long batch, long act_dim, const torch::TensorOptions& options);

// obs [K, B, obs] through each member's normalizer (none where every one is the identity).
torch::Tensor normalized(const std::vector<const Normalizer*>& normalizers, const torch::Tensor& obs);

// The noise-prediction loss of K runs (Ddpm::loss's reduction): eps and noise [K, B, act] -> [K].
torch::Tensor noise_prediction_loss(const Ddpm& ddpm, const torch::Tensor& eps, const torch::Tensor& noise);
// sqrt(abar_t), sqrt(1 - abar_t) for steps [K, B]: [K, B, 2].
torch::Tensor noising_rows(const Ddpm& ddpm, const torch::Tensor& step);
// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, x0 and noise [K, B, act], rows from noising_rows.
torch::Tensor noised_actions(const torch::Tensor& rows, const torch::Tensor& x0, const torch::Tensor& noise);

// The twin critics of K training guidance modules and their targets, what both critic updates share: the
// members' normalized observations and scaled rewards, Q regressed on a target, each member's optimizer step and
// the targets' Polyak step.
class TwinCritics {
 public:
  explicit TwinCritics(const std::vector<StackMember>& members);
  torch::Tensor normalized_obs(const torch::Tensor& obs) const { return normalized(normalizers_, obs); }
  torch::Tensor scaled_reward(const Batch& b) const { return b.reward * reward_scale_; }
  // Both target heads, no gradients: obs_act [K, B, obs + act] (normalized observations).
  std::pair<torch::Tensor, torch::Tensor> target_q(const torch::Tensor& obs_act);
  // Both online heads as constants (GuidanceModule::policy_q): gradients reach obs_act only.
  std::pair<torch::Tensor, torch::Tensor> policy_q(const torch::Tensor& obs_act);
  // Both online heads regressed on `target` [K, B, 1], each member's optimizer step, then the targets' Polyak step:
  // the K losses and the heads' outputs.
  struct Regression {
    torch::Tensor loss;
    std::pair<torch::Tensor, torch::Tensor> q;
  };
  Regression regress(const torch::Tensor& obs_act, const torch::Tensor& target);
  const GuidanceConfig& config() const { return config_; }
  const GuidanceModule::TrainedParts& first() const { return first_; }

 private:
  const std::vector<StackMember>& members_;
  const GuidanceModule::TrainedParts first_;
  StackedParams q_, q_target_;
  const GuidanceConfig config_;
  std::vector<const Normalizer*> normalizers_;
  torch::Tensor reward_scale_;  // [K, 1, 1]
};

// The IQL update of K critics (GuidanceModule::update_iql): V by expectile regression on the minimum target Q,
// Q on r + gamma (1 - terminal) V(s'), then the Polyak-averaged targets. Metrics [K] each.
class IqlCriticStack {
 public:
  explicit IqlCriticStack(const std::vector<StackMember>& members);
  GuidanceMetrics update(const Batch& b);

 private:
  const std::vector<StackMember>& members_;
  TwinCritics critics_;
  StackedParams v_;
};

// Diffusion-QL's TD update of K twin critics (GuidanceModule::update_twin_q) towards r + gamma (1 - terminal)
// min Q'(s', a') for the given next actions [K, B, act], then the Polyak-averaged targets. Metrics [K] each.
class TdCriticStack {
 public:
  explicit TdCriticStack(const std::vector<StackMember>& members) : critics_(members) {}
  GuidanceMetrics update(const Batch& b, const torch::Tensor& next_action);
  // The online critics a policy loss goes through (GuidanceModule::policy_q): constants, gradients to `act` only.
  std::pair<torch::Tensor, torch::Tensor> policy_q(const torch::Tensor& obs, const torch::Tensor& act) {
    return critics_.policy_q(torch::cat({critics_.normalized_obs(obs), act}, 2));
  }

 private:
  TwinCritics critics_;
};

// The guidance alone, from the data (Algorithm::guidance_step: iql's update, or twin-q's TD update towards the
// dataset's next action): every algorithm's guidance phase, and IDQL's joint one beside its policies.
class GuidanceStack {
 public:
  explicit GuidanceStack(const std::vector<StackMember>& members);
  StepMetrics update(const Batch& b);  // critic_loss, value_loss (iql), q_mean, q_std: [K] each

 private:
  std::optional<IqlCriticStack> iql_;
  std::optional<TdCriticStack> td_;
};

// The target critics of K frozen guidance modules: what a policy's loss goes through in the diffusion phase.
class FrozenCriticStack {
 public:
  explicit FrozenCriticStack(const std::vector<StackMember>& members);
  std::pair<torch::Tensor, torch::Tensor> policy_q(const torch::Tensor& obs, const torch::Tensor& act);

 private:
  const TwinQImpl* first_;
  StackedParams q_target_;
  std::vector<const Normalizer*> normalizers_;
};

// K diffusion policies over Diffusion-QL's MLP denoiser (no condition): their losses, their sampled chains with
// gradients and their EMAs' chains, then one backward pass and each member's optimizer step.
class MlpPolicyStack {
 public:
  explicit MlpPolicyStack(const std::vector<StackMember>& members);
  // The noise-prediction losses ([K]) of the batch's actions noised by the members' draws (draw_noising).
  torch::Tensor bc_loss(const Batch& b, const torch::Tensor& step, const torch::Tensor& noise);
  // The same losses and the one-step estimates of the clean actions from the same pass, with their gradients
  // (DiffusionModel::bc_prediction, EDP's policy improvement).
  Ddpm::Prediction bc_prediction(const Batch& b, const torch::Tensor& step, const torch::Tensor& noise);
  // Actions sampled with gradients (DiffusionModel::sample_train): noise [K, draws, B, act] (draw_sampling_noise).
  torch::Tensor sample_train(const torch::Tensor& obs, const torch::Tensor& noise);
  // The EMAs' actions, without gradients (DiffusionModel::sample_ema).
  torch::Tensor sample_ema(const torch::Tensor& obs, const torch::Tensor& noise);
  // The backward pass of the members' losses ([K]) into their gradients.
  void backward(const torch::Tensor& losses);
  // Each member's optimizer step (with its EMA), from the gradients of the last backward pass.
  void optimizer_steps();
  void step(const torch::Tensor& losses) {
    backward(losses);
    optimizer_steps();
  }
  const Ddpm& ddpm() const { return members_.front().policy->ddpm(); }

 private:
  // `first_run`: the first member's network of `params` (its parameters locate the others' in the rows).
  torch::Tensor sample(const MlpDenoiser& first_run, StackedParams& params, const torch::Tensor& obs,
                       const torch::Tensor& noise);

  const std::vector<StackMember>& members_;
  const MlpDenoiser *net_ = nullptr, *ema_net_ = nullptr;
  StackedParams params_, ema_;
  std::vector<const Normalizer*> normalizers_;
};

// The behavior-cloning update of K LN-ResNet policies (IDQL's: Algorithm::bc_update with Ddpm's loss), the
// blocks' dropout drawn as the fused blocks draw it. Returns the K losses.
class LnResnetBcStack {
 public:
  explicit LnResnetBcStack(const std::vector<StackMember>& members);
  torch::Tensor update(const Batch& b);

 private:
  const std::vector<StackMember>& members_;
  StackedParams params_;
  const LnResnetDenoiser* net_ = nullptr;
  double dropout_ = 0;
  std::vector<const Normalizer*> normalizers_;
};

}  // namespace modiff::agents
