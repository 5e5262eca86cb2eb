#include "ops/denoiser_ops.h"

#include <cmath>

#include "runtime/cuda_support.h"
#ifdef MODIFF_CUDA_KERNELS
#include "cuda/denoiser_kernels.h"
#endif

namespace modiff::agents {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

#ifdef MODIFF_CUDA_KERNELS
// The loss and its gradient in one kernel; the backward pass scales the kept gradient.
struct SquaredError : torch::autograd::Function<SquaredError> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& pred, const torch::Tensor& target,
                               double scale) {
    const auto p = pred.contiguous(), t = target.contiguous();
    auto grad = torch::empty_like(p);
    auto loss = torch::empty({}, p.options());
    if (!cuda::launch_squared_error(p.data_ptr<float>(), t.data_ptr<float>(), grad.data_ptr<float>(),
                                    loss.data_ptr<float>(), p.numel(), static_cast<float>(scale), current_cuda_stream()))
      throw std::runtime_error("squared-error kernel launch failed");
    ctx->saved_data["grad"] = grad.view(pred.sizes());
    return loss;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    return {ctx->saved_data["grad"].toTensor() * grad_outputs[0], torch::Tensor(), torch::Tensor()};
  }
};

struct FourierFeatures : torch::autograd::Function<FourierFeatures> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& t, const torch::Tensor& w) {
    const auto times = t.contiguous(), weights = w.contiguous();
    const long rows = times.numel(), half = weights.numel();
    auto out = torch::empty({rows, 2 * half}, times.options());
    if (!cuda::launch_fourier_features_forward(times.data_ptr<float>(), weights.data_ptr<float>(), out.data_ptr<float>(),
                                               rows, half, current_cuda_stream()))
      throw std::runtime_error("Fourier-features kernel launch failed");
    ctx->save_for_backward({times, weights});
    ctx->saved_data["w_grad"] = w.grad();  // the storage the gradient is added into, if any
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    if (!ctx->needs_input_grad(1)) return {torch::Tensor(), torch::Tensor()};
    const auto saved = ctx->get_saved_variables();
    const auto &times = saved[0], &weights = saved[1];
    const auto g = grad_outputs[0].contiguous();
    torch::Tensor storage = ctx->saved_data["w_grad"].toTensor();
    auto launch = [&](torch::Tensor& out, bool accumulate) {
      if (!cuda::launch_fourier_features_backward(times.data_ptr<float>(), weights.data_ptr<float>(), g.data_ptr<float>(),
                                                  out.data_ptr<float>(), times.numel(), weights.numel(), accumulate,
                                                  current_cuda_stream()))
        throw std::runtime_error("Fourier-features kernel launch failed");
    };
    if (storage.defined() && storage.is_contiguous()) {
      // Added where the accumulating linear layers add theirs (linear_accumulate.h): beside the critical path.
      run_beside([&] { launch(storage, true); }, {times, weights, g}, storage);
      return {torch::Tensor(), torch::Tensor()};
    }
    auto fresh = torch::empty_like(weights);
    launch(fresh, false);
    return {torch::Tensor(), fresh};
  }
};
#endif

}  // namespace

torch::Tensor squared_error_loss(const torch::Tensor& pred, const torch::Tensor& target, bool per_row_sum, Kernels kernels) {
#ifdef MODIFF_CUDA_KERNELS
  if (kernels.own)
    return SquaredError::apply(pred, target, per_row_sum ? 1.0 / pred.size(0) : 1.0 / pred.numel());
#else
  (void)kernels;
#endif
  if (per_row_sum) return torch::mse_loss(pred, target, at::Reduction::Sum) * (1.0 / pred.size(0));
  return torch::mse_loss(pred, target);
}


torch::Tensor fourier_features(const torch::Tensor& t, const torch::Tensor& w, Kernels kernels) {
#ifdef MODIFF_CUDA_KERNELS
  if (kernels.own) return FourierFeatures::apply(t, w);
#else
  (void)kernels;
#endif
  auto f = 2 * M_PI * torch::matmul(t, w.t());
  return torch::cat({f.cos(), f.sin()}, 1);
}

}  // namespace modiff::agents
