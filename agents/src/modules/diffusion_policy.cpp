#include "modules/diffusion_policy.h"

#include "runtime/cuda_support.h"

#include "modiff/common/error.h"

namespace modiff::agents {

DiffusionModel::DiffusionModel(const DiffusionPolicyConfig& config, int obs_dim, int act_dim,
                               const Normalizer& normalizer, torch::Device device, bool trainable,
                               Implementation implementation)
    : config_(config), implementation_(implementation), normalizer_(normalizer), ddpm_(config.diffusion, act_dim, device) {
  net_ = make_denoiser(config.denoiser, obs_dim, act_dim, implementation, device);
  ema_net_ = make_denoiser(config.denoiser, obs_dim, act_dim, implementation, device);
  params_ = flatten_parameters(*net_, trainable);
  ema_params_ = flatten_parameters(*ema_net_, false);
  blend_into(ema_params_, params_, 1.0);
  ema_net_->eval();
  if (trainable) {
    optimizer_ = std::make_unique<FlatAdam>(params_, config.adam);
    optimizer_->follow_with_ema(ema_params_, EmaRule{config.ema_rate, config.ema_start, config.ema_every});
  }
  train_mode(trainable);
}

torch::Tensor DiffusionModel::bc_loss(const torch::Tensor& obs, const torch::Tensor& act, const torch::Tensor& cond) {
  return ddpm_.loss(*net_, act, normalizer_.apply(obs), cond);
}

Ddpm::Prediction DiffusionModel::bc_prediction(const torch::Tensor& obs, const torch::Tensor& act) {
  return ddpm_.predict(*net_, act, normalizer_.apply(obs), {});
}

torch::Tensor DiffusionModel::bc_backward_separately(const torch::Tensor& obs, const torch::Tensor& act) {
  if (!separable_bc_gradients()) throw Error("internal: this denoiser's BC gradients cannot be kept apart");
  if (!bc_grads_.defined()) bc_grads_ = torch::zeros_like(params_.grads);
  else bc_grads_.zero_();
  // The accumulating layers take their gradient storage when the forward pass runs: point it at the
  // second buffer for this pass only.
  auto params = net_->parameters();
  std::vector<torch::Tensor> own;
  long offset = 0;
  for (auto& p : params) {
    own.push_back(p.grad());
    p.mutable_grad() = bc_grads_.narrow(0, offset, p.numel()).view(p.sizes());
    offset += p.numel();
  }
  auto loss = bc_loss(obs, act);
  for (size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = own[i];
  loss.backward();
  return loss.detach();
}

void DiffusionModel::add_separate_gradients() {
  join_gradients_beside();
  params_.grads.add_(bc_grads_);
}

torch::Tensor DiffusionModel::sample_train(const torch::Tensor& obs) {
  return ddpm_.sample(*net_, normalizer_.apply(obs));
}

torch::Tensor DiffusionModel::sample_ema(const torch::Tensor& obs) {
  torch::NoGradGuard no_grad;
  return ddpm_.sample(*ema_net_, normalizer_.apply(obs));
}

torch::Tensor DiffusionModel::sample_inference(const torch::Tensor& obs, c10::optional<at::Generator> generator,
                                               const torch::Tensor& noise) {
  torch::NoGradGuard no_grad;
  Denoiser& model = config_.sample_with_ema ? *ema_net_ : *net_;
  torch::Tensor cond;
  if (conditioned()) cond = condition(torch::full({obs.size(0), 1}, target_label, obs.options()));
  return ddpm_.sample(model, normalizer_.apply(obs), cond, conditioned() ? config_.guide_weight : 1.0, generator, noise);
}

torch::Tensor DiffusionModel::condition(const torch::Tensor& label) {
  return torch::cat({label, torch::ones_like(label)}, 1);
}

torch::Tensor DiffusionModel::drop_conditions(const torch::Tensor& cond) {
  auto keep = (torch::rand({cond.size(0), 1}, cond.options()) >= config_.cond_dropout).to(cond.scalar_type());
  return cond * keep;
}

void DiffusionModel::optimizer_step() { optimizer_->step(); }

void DiffusionModel::train_mode(bool on) { net_->train(on); }

std::vector<std::pair<std::string, torch::Tensor>> DiffusionModel::weights() {
  return {{"model", params_.values}, {"ema", ema_params_.values}};
}

std::vector<std::pair<std::string, torch::Tensor>> DiffusionModel::state() {
  auto s = weights();
  if (optimizer_)
    for (auto& [name, t] : optimizer_->state()) s.push_back({"adam_" + name, t});
  return s;
}

}  // namespace modiff::agents
