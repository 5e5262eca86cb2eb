#include "flat_params.h"

#include <torch/version.h>

#include <cmath>

// Fused Adam with a tensor learning rate arrived in LibTorch 2.2; Debian's 1.13 has none.
#if defined(TORCH_VERSION_MAJOR) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2))
#define MODIFF_FUSED_ADAM 1
#else
#define MODIFF_FUSED_ADAM 0
#endif

namespace modiff::agents {

FlatParams flatten_parameters(torch::nn::Module& module, bool trainable) {
  torch::NoGradGuard no_grad;
  auto params = module.parameters();
  long total = 0;
  for (const auto& p : params) total += p.numel();
  FlatParams flat;
  const auto options = params.empty() ? torch::TensorOptions() : params.front().options();
  flat.values = torch::empty({total}, options.requires_grad(false));
  if (trainable) flat.grads = torch::zeros({total}, options.requires_grad(false));
  long offset = 0;
  for (auto& p : params) {
    const long n = p.numel();
    auto view = flat.values.narrow(0, offset, n).view(p.sizes());
    view.copy_(p);
    p.set_data(view);
    if (trainable) {
      p.mutable_grad() = flat.grads.narrow(0, offset, n).view(p.sizes());
    } else {
      p.set_requires_grad(false);
    }
    offset += n;
  }
  return flat;
}

void zero_grads(FlatParams& p) { p.grads.zero_(); }

torch::Tensor clip_grad_norm(FlatParams& p, double max_norm) {
  auto norm = p.grads.norm();
  if (max_norm > 0) p.grads.mul_(torch::clamp_max(max_norm / (norm + 1e-6), 1.0));
  return norm;
}

void blend_into(FlatParams& target, const FlatParams& source, double rate) {
  torch::NoGradGuard no_grad;
  target.values.lerp_(source.values, rate);
}

void blend_into(FlatParams& target, const FlatParams& source, const torch::Tensor& rate) {
  torch::NoGradGuard no_grad;
  target.values.lerp_(source.values, rate);
}

FlatAdam::FlatAdam(FlatParams& params, const AdamConfig& config) : params_(params), config_(config) {
  m_ = torch::zeros_like(params.values);
  v_ = torch::zeros_like(params.values);
  step_ = torch::zeros({}, params.values.options());
}

torch::Tensor FlatAdam::learning_rate() const {
  // Cosine decay from the step count on the device: no host value changes between steps.
  torch::Tensor lr = torch::full({}, config_.lr, step_.options());
  if (config_.decay_steps > 0)
    lr = lr * 0.5 * (1 + torch::cos(M_PI * torch::clamp_max(step_, static_cast<double>(config_.decay_steps)) /
                                     static_cast<double>(config_.decay_steps)));
  return lr;
}

torch::Tensor FlatAdam::step() {
  torch::NoGradGuard no_grad;
  auto norm = clip_grad_norm(params_, config_.max_grad_norm);
  const auto& g = params_.grads;
#if MODIFF_FUSED_ADAM
  if (params_.values.is_cuda()) {
    // LibTorch's fused (multi-tensor) Adam/AdamW kernel, learning rate as a device tensor.
    // The kernel takes the step count already incremented (as torch.optim's fused path does).
    auto lr = learning_rate();
    step_.add_(1);
    std::vector<torch::Tensor> p{params_.values}, gr{g}, m{m_}, v{v_}, s{step_};
    if (config_.weight_decay > 0) {
      at::_fused_adamw_(p, gr, m, v, {}, s, lr, config_.beta1, config_.beta2, config_.weight_decay, config_.eps, false,
                        false);
    } else {
      at::_fused_adam_(p, gr, m, v, {}, s, lr, config_.beta1, config_.beta2, 0.0, config_.eps, false, false);
    }
    return norm;
  }
#endif
  auto lr = learning_rate();  // of the step about to be taken (step_ counts the ones taken)
  step_.add_(1);
  m_.lerp_(g, 1 - config_.beta1);
  v_.mul_(config_.beta2).addcmul_(g, g, 1 - config_.beta2);
  if (config_.weight_decay > 0) params_.values.mul_(1 - lr * config_.weight_decay);
  auto bias1 = 1 - torch::pow(config_.beta1, step_);
  auto bias2 = 1 - torch::pow(config_.beta2, step_);
  auto denom = (v_ / bias2).sqrt_().add_(config_.eps);
  params_.values.sub_((lr / bias1) * m_ / denom);
  return norm;
}

std::vector<std::pair<std::string, torch::Tensor>> FlatAdam::state() { return {{"m", m_}, {"v", v_}, {"step", step_}}; }

long FlatAdam::state_bytes() const { return (m_.numel() + v_.numel()) * static_cast<long>(m_.element_size()); }

}  // namespace modiff::agents
