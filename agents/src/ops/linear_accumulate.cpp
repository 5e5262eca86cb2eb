#include "ops/linear_accumulate.h"

#include "runtime/cuda_support.h"
#ifdef MODIFF_CUDA_KERNELS
#include "cuda/narrow_weight_grad_kernel.h"
#endif

#include <map>
#include <mutex>
#include <tuple>

namespace modiff::agents {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The parameters' gradient storage, taken when the forward pass runs.
void keep_grad_storage(AutogradContext* ctx, const torch::Tensor& weight, const torch::Tensor& bias) {
  ctx->saved_data["weight_grad"] = weight.grad();
  ctx->saved_data["bias_grad"] = bias.defined() ? bias.grad() : torch::Tensor();
}

// Adds the gradient into the parameter's storage, or hands it back to autograd where there is none.
torch::Tensor grad_or_accumulated(AutogradContext* ctx, const char* name, const std::vector<torch::Tensor>& used,
                                  const std::function<void(torch::Tensor&)>& accumulate,
                                  const std::function<torch::Tensor()>& fresh) {
  torch::Tensor storage = ctx->saved_data[name].toTensor();
  if (storage.defined()) {
    // Only the optimizer waits for it: off the critical path where a side stream is allowed.
    run_beside([&] { accumulate(storage); }, used, storage);
    return {};
  }
  return fresh();
}

// storage[:, offset : offset + count] += g^T x: modiff's kernel for a few columns over a tall batch
// (cuda/narrow_weight_grad.cu), cuBLAS otherwise.
void add_weight_grad(torch::Tensor& storage, const torch::Tensor& g, const torch::Tensor& x, long offset) {
  const long count = x.size(1);
#ifdef MODIFF_CUDA_KERNELS
  if (count <= cuda::kNarrowMaxColumns && g.size(0) >= 64 && own_kernels_take({storage, g, x}) &&
      storage.is_contiguous() && g.stride(1) == 1 && x.stride(1) == 1 &&
      cuda::launch_narrow_weight_grad(g.data_ptr<float>(), g.stride(0), x.data_ptr<float>(), x.stride(0),
                                      storage.data_ptr<float>(), storage.size(1), offset, g.size(0), g.size(1), count,
                                      current_cuda_stream()))
    return;
#endif
  storage.narrow(1, offset, count).addmm_(g.t(), x);
}

// Gradients of y = x W[:, offset : offset + count]^T (+ b): for x, and for W and b accumulated into their
// storage where they have one.
variable_list linear_backward(AutogradContext* ctx, const torch::Tensor& g, bool with_bias) {
  const auto saved = ctx->get_saved_variables();
  const auto &x = saved[0], &weight = saved[1];
  const long offset = ctx->saved_data["offset"].toInt(), count = x.size(1);
  torch::Tensor gx, gw, gb;
  if (ctx->needs_input_grad(0)) gx = g.mm(weight.narrow(1, offset, count));
  if (ctx->needs_input_grad(1))
    gw = grad_or_accumulated(
        ctx, "weight_grad", {g, x}, [&](torch::Tensor& s) { add_weight_grad(s, g, x, offset); },
        [&] {
          if (count == weight.size(1)) return g.t().mm(x);
          auto full = torch::zeros_like(weight);
          full.narrow(1, offset, count).copy_(g.t().mm(x));
          return full;
        });
  if (!with_bias) return {gx, gw, torch::Tensor()};
  if (ctx->needs_input_grad(2)) {
    const auto ones = ones_like_rows(g.size(0), g);
    gb = grad_or_accumulated(
        ctx, "bias_grad", {g}, [&](torch::Tensor& s) { s.addmv_(g.t(), ones); }, [&] { return g.t().mv(ones); });
  }
  return {gx, gw, gb, torch::Tensor()};
}

// x [B, count] times the columns offset .. offset + count of weight [out, in], plus bias [out].
struct LinearAccumulate : torch::autograd::Function<LinearAccumulate> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, int64_t offset) {
    ctx->save_for_backward({x, weight});
    keep_grad_storage(ctx, weight, bias);
    ctx->saved_data["offset"] = offset;
    return torch::addmm(bias, x, weight.narrow(1, offset, x.size(1)).t());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    return linear_backward(ctx, grad_outputs[0], true);
  }
};

// The same without a bias (LibTorch 1.13's autograd functions take no undefined inputs).
struct ColumnsAccumulate : torch::autograd::Function<ColumnsAccumulate> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               int64_t offset) {
    ctx->save_for_backward({x, weight});
    keep_grad_storage(ctx, weight, torch::Tensor());
    ctx->saved_data["offset"] = offset;
    return x.mm(weight.narrow(1, offset, x.size(1)).t());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    return linear_backward(ctx, grad_outputs[0], false);
  }
};

// addend + x times the columns offset .. offset + count of weight: a layer's parts summed by the products
// themselves (addmm's beta = 1) instead of by an addition per part. The addend's gradient is g.
struct ColumnsOntoAccumulate : torch::autograd::Function<ColumnsOntoAccumulate> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               int64_t offset, const torch::Tensor& addend) {
    ctx->save_for_backward({x, weight});
    keep_grad_storage(ctx, weight, torch::Tensor());
    ctx->saved_data["offset"] = offset;
    return torch::addmm(addend, x, weight.narrow(1, offset, x.size(1)).t());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto grads = linear_backward(ctx, grad_outputs[0], false);  // x, weight, offset
    grads.push_back(ctx->needs_input_grad(2) ? grad_outputs[0] : torch::Tensor());  // tensor inputs only are counted
    return grads;
  }
};

struct StackedLinearAccumulate : torch::autograd::Function<StackedLinearAccumulate> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias) {
    ctx->save_for_backward({x, weight});
    keep_grad_storage(ctx, weight, bias);
    return torch::baddbmm(bias, x, weight);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1];
    const torch::Tensor g = grad_outputs[0];
    torch::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) gx = torch::bmm(g, weight.transpose(1, 2));
    if (ctx->needs_input_grad(1)) {
      const auto xt = x.transpose(1, 2);
      gw = grad_or_accumulated(
          ctx, "weight_grad", {g, x}, [&](torch::Tensor& s) { s.baddbmm_(xt, g); }, [&] { return torch::bmm(xt, g); });
    }
    if (ctx->needs_input_grad(2)) {
      const auto ones = ones_like_rows(g.size(0) * g.size(1), g).view({g.size(0), 1, g.size(1)});
      gb = grad_or_accumulated(
          ctx, "bias_grad", {g}, [&](torch::Tensor& s) { s.baddbmm_(ones, g); }, [&] { return torch::bmm(ones, g); });
    }
    return {gx, gw, gb};
  }
};

}  // namespace

torch::Tensor ones_like_rows(long n, const torch::Tensor& like) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, int, long>, torch::Tensor> cache;
  const auto key = std::make_tuple(static_cast<int>(like.device().type()), static_cast<int>(like.device().index()),
                                   static_cast<int>(like.scalar_type()), n);
  std::lock_guard<std::mutex> lock(mutex);
  auto& ones = cache[key];
  if (!ones.defined()) ones = torch::ones({n}, like.options().requires_grad(false));
  return ones;
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     bool param_grads) {
  if (!param_grads || !torch::GradMode::is_enabled()) return torch::addmm(bias.detach(), x, weight.detach().t());
  return LinearAccumulate::apply(x, weight, bias, 0);
}

torch::Tensor linear_columns(const torch::Tensor& x, const torch::Tensor& weight, long offset,
                             const torch::Tensor& bias) {
  if (!torch::GradMode::is_enabled()) {
    const auto w = weight.narrow(1, offset, x.size(1)).t();
    return bias.defined() ? torch::addmm(bias, x, w) : x.mm(w);
  }
  if (!bias.defined()) return ColumnsAccumulate::apply(x, weight, static_cast<int64_t>(offset));
  return LinearAccumulate::apply(x, weight, bias, static_cast<int64_t>(offset));
}

torch::Tensor linear_columns_onto(const torch::Tensor& addend, const torch::Tensor& x, const torch::Tensor& weight,
                                  long offset) {
  if (!torch::GradMode::is_enabled()) return torch::addmm(addend, x, weight.narrow(1, offset, x.size(1)).t());
  return ColumnsOntoAccumulate::apply(x, weight, static_cast<int64_t>(offset), addend);
}

torch::Tensor stacked_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                             bool param_grads) {
  if (!param_grads || !torch::GradMode::is_enabled()) return torch::baddbmm(bias.detach(), x, weight.detach());
  return StackedLinearAccumulate::apply(x, weight, bias);
}

}  // namespace modiff::agents
