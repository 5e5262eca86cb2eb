#pragma once
// A guidance module: a value estimator trained from the data alone and used,
// frozen, to guide diffusion policies. Two kinds share one interface, Q(s, a)
// as the minimum of twin target critics, and V(s) where the kind has one:
//   iql    : IDQL's critic. Twin Q + V, expectile regression of V on min target Q,
//            Q regressed on r + gamma V(s'); rewards scaled by 1000 / (return range).
//   twin-q : Diffusion-QL's critic. Twin Q (Mish), TD target min Q'(s', a'). In joint
//            training a' comes from the diffusion policy's EMA (as published); trained
//            on its own (guidance-first) a' is the dataset's next action: a SARSA target,
//            i.e. the behavior policy's Q, which depends on the data alone (see docs/agents.md).
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ops/flat_params.h"
#include "ops/iql_losses.h"
#include "nets/networks.h"
#include "nets/offline_data.h"

namespace modiff::agents {

// What a guidance module is built from (and its manifest records). A training run sets every field from its
// algorithm's table (algos/); the defaults here only serve building blocks in tests.
struct GuidanceConfig {
  std::string kind = "iql";  // iql | twin-q
  int hidden = 256;
  int layers = 2;            // hidden layers per network (iql 2, twin-q 3)
  Activation activation = Activation::Relu;
  double discount = 0.99;
  double tau = 0.005;        // target Polyak rate, every step
  double expectile = 0.7;    // iql
  double lr = 3e-4;
  long lr_decay_steps = 0;   // > 0: cosine decay (Diffusion-QL decays its critic)
  double max_grad_norm = 0;  // > 0: clip (Diffusion-QL)
  bool scale_rewards = true; // iql: r * 1000 / (max episode return - min episode return)
  bool normalize_obs = false;
};

// The factor a fresh module multiplies the data's rewards by: 1000 / (max - min episode return) with
// scale_rewards (IQL's rule), else 1.
double reward_scale(const GuidanceConfig& config, const OfflineData& data);

// Device scalars from one update (no host sync); undefined where not applicable.
struct GuidanceMetrics {
  torch::Tensor critic_loss, value_loss, q_mean, q_std;
};

class GuidanceModule {
 public:
  // A fresh, trainable module. reward_scale multiplies the data's rewards.
  GuidanceModule(const GuidanceConfig& config, int obs_dim, int act_dim, const Normalizer& normalizer,
                 double reward_scale, torch::Device device, Implementation implementation);

  const GuidanceConfig& config() const { return config_; }
  bool has_v() const { return config_.kind == "iql"; }
  bool frozen() const { return frozen_; }
  double reward_scale() const { return reward_scale_; }
  const Normalizer& normalizer() const { return normalizer_; }

  // Guidance for selection and labels (raw observations in): the twin target critics,
  // their minimum, and V.
  std::pair<torch::Tensor, torch::Tensor> target_q(const torch::Tensor& obs, const torch::Tensor& act);
  torch::Tensor q_min(const torch::Tensor& obs, const torch::Tensor& act);
  torch::Tensor v(const torch::Tensor& obs);
  // The critics a policy gradient goes through: the online ones while training, the target ones once frozen.
  std::pair<torch::Tensor, torch::Tensor> policy_q(const torch::Tensor& obs, const torch::Tensor& act);

  // One update from a batch (iql: V then Q; twin-q: TD with next_action, the
  // dataset's or a policy's). Polyak-updates the targets.
  GuidanceMetrics update(const Batch& batch, const torch::Tensor& next_action);

  // Keeps only what guiding needs (target critics, V): drops the online critics,
  // optimizer state and gradients. Irreversible.
  void freeze();

  // What a group's stacked steps (algos/stacked_steps.h) train directly while the module trains: the
  // networks, their flat parameters and optimizers (V's null for twin-q).
  struct TrainedParts {
    TwinQImpl *q, *q_target;
    MlpImpl* v;
    FlatParams *q_params, *q_target_params, *v_params;
    FlatAdam *q_optimizer, *v_optimizer;
  };
  TrainedParts trained_parts();
  // The target critics (what guides once the module is frozen) and their flat parameters, for stacked steps.
  struct TargetCritics {
    TwinQImpl* net;
    FlatParams* params;
  };
  TargetCritics target_critics() { return {q_target_.get(), &q_target_params_}; }
  // V(s) and its flat parameters (a null network for twin-q), for stacked inference.
  struct ValueNetwork {
    MlpImpl* net;
    FlatParams* params;
  };
  ValueNetwork value_network() { return {v_ ? v_.get() : nullptr, &v_params_}; }

  // Every tensor of the module's state by name: weights (and optimizer state while training).
  std::vector<std::pair<std::string, torch::Tensor>> state();
  // The weights an artifact holds (target critics, V).
  std::vector<std::pair<std::string, torch::Tensor>> weights();
  long parameter_count() const;

 private:
  GuidanceMetrics update_iql(const Batch& batch);
  GuidanceMetrics update_twin_q(const Batch& batch, const torch::Tensor& next_action);

  GuidanceConfig config_;
  Kernels kernels_;  // the fast implementation's IQL loss kernels (none for the reference one)
  Normalizer normalizer_;
  double reward_scale_;
  bool frozen_ = false;
  TwinQ q_{nullptr}, q_target_{nullptr};
  Mlp v_{nullptr};
  FlatParams q_params_, q_target_params_, v_params_;
  std::unique_ptr<FlatAdam> q_optimizer_, v_optimizer_;
};


}  // namespace modiff::agents
