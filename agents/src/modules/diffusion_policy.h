#pragma once
// A diffusion policy: a denoiser, its noise schedule and sampler, an EMA copy,
// its optimizer while training, and (classifier-free guidance) the label
// conditioning it was trained with.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "nets/diffusion.h"
#include "ops/flat_params.h"
#include "nets/networks.h"
#include "nets/offline_data.h"

namespace modiff::agents {

// What a diffusion policy is built from (and its manifest records). A training run sets every field from its
// algorithm's table (algos/); the defaults here only serve building blocks in tests.
struct DiffusionPolicyConfig {
  DenoiserConfig denoiser;
  DiffusionConfig diffusion;
  AdamConfig adam;            // decay_steps is set to the training steps by the trainer
  double ema_rate = 0.001;    // ema <- ema + rate (model - ema)
  long ema_start = 0;         // before this step the EMA copies the model (Diffusion-QL: 1000)
  int ema_every = 1;          // EMA update period in steps (Diffusion-QL: 5)
  bool sample_with_ema = true;  // IDQL samples from the EMA, Diffusion-QL from the model
  bool normalize_obs = false;
  // Classifier-free reward guidance (denoiser.cond_dim == 2).
  double cond_dropout = 0.25;  // probability of the null condition in training
  double guide_weight = 1.5;   // w in eps(null) + w (eps(c) - eps(null))
  double target_quantile = 0.9;  // sampling label: this quantile of the data's labels
  // Inference defaults recorded in the manifest.
  int candidates = 64;
  std::string select = "argmax";  // argmax | softmax | expectile
};


class DiffusionModel {
 public:
  DiffusionModel(const DiffusionPolicyConfig& config, int obs_dim, int act_dim, const Normalizer& normalizer,
                 torch::Device device, bool trainable, Implementation implementation);

  const DiffusionPolicyConfig& config() const { return config_; }
  bool conditioned() const { return config_.denoiser.cond_dim > 0; }
  Implementation implementation() const { return implementation_; }
  Denoiser& model() { return *net_; }
  Denoiser& ema_model() { return *ema_net_; }
  Ddpm& ddpm() { return ddpm_; }
  const Normalizer& normalizer() const { return normalizer_; }

  // The BC (noise-prediction) loss of clean actions under raw observations.
  torch::Tensor bc_loss(const torch::Tensor& obs, const torch::Tensor& act, const torch::Tensor& cond = {});
  // The same loss and, from its pass, the one-step estimate of the clean actions (Ddpm::predict; EDP).
  Ddpm::Prediction bc_prediction(const torch::Tensor& obs, const torch::Tensor& act);
  // Samples through the training model (differentiable) or the inference weights (EMA or model, no grad).
  torch::Tensor sample_train(const torch::Tensor& obs);
  torch::Tensor sample_ema(const torch::Tensor& obs);
  torch::Tensor sample_inference(const torch::Tensor& obs, c10::optional<at::Generator> generator,
                                 const torch::Tensor& noise = {});

  // The condition a label column [B, 1] gives the denoiser: [label, 1]; null is [0, 0].
  static torch::Tensor condition(const torch::Tensor& label);
  // Replaces each row's condition by the null one with probability cond_dropout.
  torch::Tensor drop_conditions(const torch::Tensor& cond);

  // Diffusion-QL's BC pass can run beside its sampled chain (a parallel CUDA branch) when every
  // parameter's gradient goes through the accumulating linear layers, as in the MLP denoiser: the BC
  // loss's backward pass then writes into a second gradient buffer, added to the first before the
  // optimizer step, and the two passes share no tensor.
  bool separable_bc_gradients() const { return net_->fast() && net_->fast()->only_accumulating_layers(); }
  // The BC loss, its gradients already in the second buffer.
  torch::Tensor bc_backward_separately(const torch::Tensor& obs, const torch::Tensor& act);
  // Adds the second buffer's gradients to the parameters' own.
  void add_separate_gradients();

  // Optimizer step from the current gradients, then the EMA rule (ema_rate, ema_start, ema_every)
  // for the step count the optimizer keeps (1-based, on the device: graph-capturable).
  void optimizer_step();
  void zero_grad() { zero_grads(params_); }
  void train_mode(bool on);

  // Label statistics of classifier-free guidance (set by the trainer).
  double label_mean = 0, label_std = 1, target_label = 0;

  // What a group's stacked steps (algos/stacked_steps.h) train directly: the network, its flat parameters
  // and their optimizer (null where not trainable).
  struct TrainedParts {
    Denoiser* net;
    FlatParams* params;
    FlatAdam* optimizer;
    Denoiser* ema_net;  // the EMA its optimizer steps update (Diffusion-QL's critic samples next actions from it)
    FlatParams* ema_params;
  };
  TrainedParts trained_parts() { return {net_.get(), &params_, optimizer_.get(), ema_net_.get(), &ema_params_}; }

  std::vector<std::pair<std::string, torch::Tensor>> state();    // weights, EMA, optimizer
  std::vector<std::pair<std::string, torch::Tensor>> weights();  // model and EMA weights
  long parameter_count() const { return params_.values.numel(); }

 private:
  DiffusionPolicyConfig config_;
  Implementation implementation_;
  Normalizer normalizer_;
  std::shared_ptr<Denoiser> net_, ema_net_;
  FlatParams params_, ema_params_;
  torch::Tensor bc_grads_;  // the second gradient buffer (separable_bc_gradients)
  std::unique_ptr<FlatAdam> optimizer_;
  Ddpm ddpm_;
};

}  // namespace modiff::agents
