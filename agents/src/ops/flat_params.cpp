#include "ops/flat_params.h"

#include "runtime/cuda_support.h"
#include "modiff/common/error.h"
#ifdef MODIFF_CUDA_KERNELS
#include "cuda/flat_adam_kernel.h"
#endif

#include <torch/version.h>

#include <cmath>

// Fused Adam with a tensor learning rate arrived in LibTorch 2.2; Debian's 1.13 has none.
#if defined(TORCH_VERSION_MAJOR) && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2))
#define MODIFF_FUSED_ADAM 1
#else
#define MODIFF_FUSED_ADAM 0
#endif

namespace modiff::agents {

#if MODIFF_FUSED_ADAM
namespace {
// LibTorch's multi-tensor kernel gives each 65,536-element chunk of a tensor one thread block, which
// walks it in 32 dependent rounds: on one flat tensor that was a handful of blocks and about 40 us per
// update whatever the size (profiled, docs/benchmarks.md). Cut into slices, 36 per launch (the most one
// launch takes for Adam's four lists), a critic's update becomes 36 blocks of one or two rounds; a
// larger network is cut into two such groups, whose launches run side by side (cuda_support.h).
constexpr long kAdamSlicesPerLaunch = 36;

std::vector<torch::Tensor> adam_slices(const torch::Tensor& flat, long slices) {
  const long n = flat.numel();
  const long size = ((n + slices - 1) / slices + 3) / 4 * 4;  // 16-byte aligned: vectorized loads
  std::vector<torch::Tensor> out;
  for (long at = 0; at < n; at += size) out.push_back(flat.narrow(0, at, std::min(size, n - at)));
  return out;
}
}  // namespace
#endif

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

void move_parameters(torch::nn::Module& module, FlatParams& p, const torch::Tensor& values, const torch::Tensor& grads) {
  torch::NoGradGuard no_grad;
  const bool trainable = p.grads.defined();
  auto fits = [](const torch::Tensor& to, const torch::Tensor& from) {
    return to.defined() && to.numel() == from.numel() && to.is_contiguous();
  };
  if (!fits(values, p.values) || (trainable && !fits(grads, p.grads)))
    throw Error("internal: parameters moved into storage of another size");
  values.copy_(p.values);
  if (trainable) grads.copy_(p.grads);
  const float* old_base = p.values.data_ptr<float>();
  for (auto& param : module.parameters()) {
    const long offset = param.data_ptr<float>() - old_base;
    param.set_data(values.narrow(0, offset, param.numel()).view(param.sizes()));
    if (trainable) param.mutable_grad() = grads.narrow(0, offset, param.numel()).view(param.sizes());
  }
  p.values = values;
  if (trainable) p.grads = grads;
}

void zero_grads(FlatParams& p) { p.grads.zero_(); }

torch::Tensor clip_grad_norm(FlatParams& p, double max_norm) {
  join_gradients_beside();
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
  constant_lr_ = torch::full({}, config_.lr, step_.options());
  if (params.values.is_cuda()) blocks_done_ = torch::zeros({1}, params.values.options().dtype(torch::kInt32));
}

void FlatAdam::follow_with_ema(FlatParams& ema, const EmaRule& rule) {
  if (rule.every < 1) throw Error("EMA period must be at least one step");
  ema_ = &ema;
  ema_rule_ = rule;
}

void FlatAdam::update_ema() {
  if (ema_ == nullptr) return;
  if (!step_.is_cuda()) {
    // The count is on the host here: the rule as the host reads it.
    const long t = std::lround(step_.item<double>());
    if (t % ema_rule_.every == 0) blend_into(*ema_, params_, t < ema_rule_.start ? 1.0 : ema_rule_.rate);
    return;
  }
  // On the device without modiff's kernel: the weight from the device count (0 on skipped steps).
  const auto due = torch::fmod(step_, static_cast<double>(ema_rule_.every)) == 0;
  const auto weight = torch::where(step_ < static_cast<double>(ema_rule_.start), torch::ones_like(step_),
                                   torch::full_like(step_, ema_rule_.rate)) *
                      due.to(step_.scalar_type());
  blend_into(*ema_, params_, weight);
}

torch::Tensor FlatAdam::learning_rate() const {
  // Without decay: one tensor made once (no kernel in the step). Cosine decay from the step
  // count on the device, lr/2 (1 + cos(pi min(step, D) / D)): no host value changes between steps.
  if (config_.decay_steps <= 0) return constant_lr_;
  const double decay = static_cast<double>(config_.decay_steps), half = config_.lr / 2;
  return torch::cos(torch::clamp_max(step_, decay) * (M_PI / decay)).mul_(half).add_(half);
}

void FlatAdam::step() {
  torch::NoGradGuard no_grad;
  join_gradients_beside();
  if (config_.max_grad_norm > 0) clip_grad_norm(params_, config_.max_grad_norm);
  const auto& g = params_.grads;
#ifdef MODIFF_CUDA_KERNELS
  if (params_.values.is_cuda()) {
    // modiff's own kernel (agents/src/cuda/flat_adam.cu): one pass over the flat tensors, the step
    // count's increment, the learning rate's decay and the EMA computed inside it.
    cuda::FlatAdamLaunch launch{params_.values.data_ptr<float>(), m_.data_ptr<float>(), v_.data_ptr<float>(),
                                g.data_ptr<float>(), params_.values.numel(), step_.data_ptr<float>(),
                                reinterpret_cast<unsigned int*>(blocks_done_.data_ptr<int>()),
                                static_cast<float>(config_.lr), config_.decay_steps, static_cast<float>(config_.beta1),
                                static_cast<float>(config_.beta2), static_cast<float>(config_.eps),
                                static_cast<float>(config_.weight_decay)};
    if (ema_ != nullptr) {
      launch.ema = ema_->values.data_ptr<float>();
      launch.ema_rate = static_cast<float>(ema_rule_.rate);
      launch.ema_start = ema_rule_.start;
      launch.ema_every = ema_rule_.every;
    }
    if (cuda::launch_flat_adam(launch, current_cuda_stream())) return;
    // Not launched (unaligned buffers): LibTorch's kernel below takes the step.
  }
#endif
#if MODIFF_FUSED_ADAM
  if (params_.values.is_cuda()) {
    // LibTorch's fused (multi-tensor) Adam/AdamW kernel, learning rate as a device tensor.
    // The kernel takes the step count already incremented (as torch.optim's fused path does).
    auto lr = learning_rate();
    step_.add_(1);
    if (slices_.values.empty()) {
      // Two launches side by side once a launch's slices would each take more than 8 rounds.
      const long groups = params_.values.numel() > kAdamSlicesPerLaunch * 8 * 2048 ? 2 : 1;
      const long slices = groups * kAdamSlicesPerLaunch;
      slices_.values = adam_slices(params_.values, slices);
      slices_.grads = adam_slices(g, slices);
      slices_.m = adam_slices(m_, slices);
      slices_.v = adam_slices(v_, slices);
      slices_.steps.assign(slices_.values.size(), step_);  // read-only in the kernel: one tensor for all
    }
    auto launch = [&](size_t begin, size_t end) {
      auto part = [&](const std::vector<torch::Tensor>& list) {
        return std::vector<torch::Tensor>(list.begin() + begin, list.begin() + end);
      };
      if (config_.weight_decay > 0) {
        at::_fused_adamw_(part(slices_.values), part(slices_.grads), part(slices_.m), part(slices_.v), {},
                          part(slices_.steps), lr, config_.beta1, config_.beta2, config_.weight_decay, config_.eps,
                          false, false);
      } else {
        at::_fused_adam_(part(slices_.values), part(slices_.grads), part(slices_.m), part(slices_.v), {},
                         part(slices_.steps), lr, config_.beta1, config_.beta2, 0.0, config_.eps, false, false);
      }
    };
    const size_t count = slices_.values.size(), first = std::min<size_t>(count, kAdamSlicesPerLaunch);
    if (first < count) run_beside([&] { launch(first, count); }, {params_.values, lr});
    launch(0, first);
    join_gradients_beside();
    update_ema();
    return;
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
  update_ema();
}

std::vector<std::pair<std::string, torch::Tensor>> FlatAdam::state() { return {{"m", m_}, {"v", v_}, {"step", step_}}; }

long FlatAdam::state_bytes() const { return (m_.numel() + v_.numel()) * static_cast<long>(m_.element_size()); }

}  // namespace modiff::agents
