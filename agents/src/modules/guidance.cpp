#include "modules/guidance.h"

#include "modiff/common/error.h"

namespace modiff::agents {

double reward_scale(const GuidanceConfig& config, const OfflineData& data) {
  if (!config.scale_rewards) return 1.0;
  const double range = data.max_episode_return - data.min_episode_return;
  return range > 0 ? 1000.0 / range : 1.0;
}

GuidanceModule::GuidanceModule(const GuidanceConfig& config, int obs_dim, int act_dim, const Normalizer& normalizer,
                               double reward_scale, torch::Device device, Implementation implementation)
    : config_(config),
      kernels_(implementation == Implementation::Fast ? Kernels::for_device(device) : Kernels{}),
      normalizer_(normalizer),
      reward_scale_(reward_scale) {
  if (config.kind != "iql" && config.kind != "twin-q")
    throw Error("unknown guidance kind '" + config.kind + "' (iql, twin-q)");
  q_ = TwinQ(obs_dim, act_dim, config.hidden, config.layers, config.activation, implementation);
  q_target_ = TwinQ(obs_dim, act_dim, config.hidden, config.layers, config.activation, implementation);
  q_->to(device);
  q_target_->to(device);
  q_params_ = flatten_parameters(*q_, true);
  q_target_params_ = flatten_parameters(*q_target_, false);
  blend_into(q_target_params_, q_params_, 1.0);
  AdamConfig adam;
  adam.lr = config.lr;
  adam.decay_steps = config.lr_decay_steps;
  adam.max_grad_norm = config.max_grad_norm;
  q_optimizer_ = std::make_unique<FlatAdam>(q_params_, adam);
  if (has_v()) {
    v_ = Mlp(obs_dim, std::vector<int>(config.layers, config.hidden), 1, config.activation, /*layer_norm_input=*/true,
             implementation);
    v_->to(device);
    v_params_ = flatten_parameters(*v_, true);
    v_optimizer_ = std::make_unique<FlatAdam>(v_params_, adam);
  }
}

std::pair<torch::Tensor, torch::Tensor> GuidanceModule::target_q(const torch::Tensor& obs, const torch::Tensor& act) {
  return q_target_->forward(normalizer_.apply(obs), act);
}

torch::Tensor GuidanceModule::q_min(const torch::Tensor& obs, const torch::Tensor& act) {
  auto [q1, q2] = target_q(obs, act);
  return torch::min(q1, q2);
}

torch::Tensor GuidanceModule::v(const torch::Tensor& obs) {
  if (!has_v()) throw Error("guidance '" + config_.kind + "' has no V(s)");
  return v_->forward(normalizer_.apply(obs));
}

std::pair<torch::Tensor, torch::Tensor> GuidanceModule::policy_q(const torch::Tensor& obs, const torch::Tensor& act) {
  // The critic's own gradients from a policy loss would be discarded (its next update zeroes them): not computed.
  return frozen_ ? target_q(obs, act) : q_->forward(normalizer_.apply(obs), act, /*param_grads=*/false);
}

GuidanceMetrics GuidanceModule::update(const Batch& batch, const torch::Tensor& next_action) {
  if (frozen_) throw Error("internal: update of a frozen guidance module");
  return has_v() ? update_iql(batch) : update_twin_q(batch, next_action);
}

void GuidanceModule::freeze() {
  frozen_ = true;
  q_optimizer_.reset();
  v_optimizer_.reset();
  q_ = nullptr;
  q_params_ = {};
  if (v_) {
    v_params_.grads = torch::Tensor();
    for (auto& p : v_->parameters()) {
      p.mutable_grad() = torch::Tensor();
      p.set_requires_grad(false);
    }
  }
}

GuidanceModule::TrainedParts GuidanceModule::trained_parts() {
  if (frozen_) throw Error("internal: the parts of a frozen guidance module trained");
  return {q_.get(),        q_target_.get(),      v_ ? v_.get() : nullptr, &q_params_, &q_target_params_,
          &v_params_,      q_optimizer_.get(), v_optimizer_.get()};
}

std::vector<std::pair<std::string, torch::Tensor>> GuidanceModule::weights() {
  std::vector<std::pair<std::string, torch::Tensor>> w = {{"q_target", q_target_params_.values}};
  if (has_v()) w.push_back({"v", v_params_.values});
  return w;
}

std::vector<std::pair<std::string, torch::Tensor>> GuidanceModule::state() {
  auto s = weights();
  if (frozen_) return s;
  s.push_back({"q", q_params_.values});
  for (auto& [name, t] : q_optimizer_->state()) s.push_back({"q_adam_" + name, t});
  if (v_optimizer_)
    for (auto& [name, t] : v_optimizer_->state()) s.push_back({"v_adam_" + name, t});
  return s;
}

long GuidanceModule::parameter_count() const {
  return q_target_params_.values.numel() + (v_params_.values.defined() ? v_params_.values.numel() : 0);
}


}  // namespace modiff::agents
