#include "ops/ln_resnet_block.h"

#include "runtime/cuda_support.h"
#include "ops/linear_accumulate.h"
#ifdef MODIFF_CUDA_KERNELS
#include "cuda/layer_norm_dropout_kernel.h"
#endif

#include "modiff/common/error.h"

namespace modiff::agents {

torch::Tensor ln_resnet_block_reference(const torch::Tensor& h, const LnResnetBlockParams& p,
                                        const torch::Tensor& uniforms, double dropout) {
  auto x = uniforms.defined() ? h * (uniforms >= dropout).to(h.scalar_type()) * (1.0 / (1.0 - dropout)) : h;
  auto r = torch::layer_norm(x, {h.size(1)}, p.norm_weight, p.norm_bias, p.norm_eps);
  auto inner = activate(p.activation, torch::linear(r, p.expand_weight, p.expand_bias));
  return h + torch::linear(inner, p.contract_weight, p.contract_bias);
}

#ifdef MODIFF_CUDA_KERNELS
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::vector<torch::Tensor> parameters_of(const LnResnetBlockParams& p) {
  return {p.norm_weight, p.norm_bias, p.expand_weight, p.expand_bias, p.contract_weight, p.contract_bias};
}

cuda::LayerNormDropoutShape shape_of(const torch::Tensor& h, const torch::Tensor& uniforms, double dropout, double eps) {
  return {h.size(0), h.size(1), uniforms.numel() > 0 ? uniforms.data_ptr<float>() : nullptr,
          static_cast<float>(dropout), static_cast<float>(eps)};
}

void check_launch(bool launched, const char* what) {
  if (!launched) throw Error(std::string("internal: the fused LN-ResNet kernel (") + what + ") did not launch");
}

// LN(dropout(h)) gamma + beta and h + contract_bias; the rows' statistics where `stats`.
struct BlockInput {
  torch::Tensor normed, residual, mean, rstd;
};
BlockInput block_input(const torch::Tensor& h, const torch::Tensor& uniforms, double dropout,
                       const LnResnetBlockParams& p, bool stats) {
  BlockInput in{torch::empty_like(h), torch::empty_like(h), {}, {}};
  if (stats) {
    in.mean = torch::empty({h.size(0)}, h.options());
    in.rstd = torch::empty({h.size(0)}, h.options());
  }
  check_launch(cuda::launch_layer_norm_dropout_forward(
                   shape_of(h, uniforms, dropout, p.norm_eps), h.data_ptr<float>(), p.norm_weight.data_ptr<float>(),
                   p.norm_bias.data_ptr<float>(), p.contract_bias.data_ptr<float>(), in.normed.data_ptr<float>(),
                   in.residual.data_ptr<float>(), stats ? in.mean.data_ptr<float>() : nullptr,
                   stats ? in.rstd.data_ptr<float>() : nullptr, current_cuda_stream()),
               "forward");
  return in;
}

torch::Tensor activation_backward(Activation a, const torch::Tensor& grad, const torch::Tensor& pre,
                                  const torch::Tensor& post) {
  switch (a) {
    case Activation::Silu: return at::silu_backward(grad, pre);
    case Activation::Mish: return at::mish_backward(grad, pre);
    case Activation::Relu: return at::threshold_backward(grad, post, 0);
  }
  return {};
}

struct FusedBlock : torch::autograd::Function<FusedBlock> {
  // `uniforms` is an empty tensor where there is no dropout (LibTorch's autograd functions take defined inputs).
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& h, const torch::Tensor& uniforms,
                               const torch::Tensor& norm_weight, const torch::Tensor& norm_bias,
                               const torch::Tensor& expand_weight, const torch::Tensor& expand_bias,
                               const torch::Tensor& contract_weight, const torch::Tensor& contract_bias, double dropout,
                               double eps, int64_t activation) {
    const LnResnetBlockParams p{norm_weight, norm_bias, expand_weight, expand_bias, contract_weight, contract_bias,
                                eps, static_cast<Activation>(activation)};
    auto in = block_input(h, uniforms, dropout, p, true);
    auto pre = torch::addmm(expand_bias, in.normed, expand_weight.t());
    auto post = activate(p.activation, pre);
    auto out = torch::addmm(in.residual, post, contract_weight.t());
    ctx->save_for_backward({h, uniforms, norm_weight, expand_weight, contract_weight, in.normed, pre, post, in.mean,
                            in.rstd});
    // The gradient storage as it is now (Diffusion-QL's separate BC buffer swaps it around a forward pass).
    const char* names[] = {"g_norm_weight", "g_norm_bias", "g_expand_weight", "g_expand_bias", "g_contract_weight",
                           "g_contract_bias"};
    const auto params = parameters_of(p);
    for (size_t i = 0; i < params.size(); ++i) ctx->saved_data[names[i]] = params[i].grad();
    ctx->saved_data["dropout"] = dropout;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["activation"] = activation;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &h = saved[0], &uniforms = saved[1], &norm_weight = saved[2], &expand_weight = saved[3],
               &contract_weight = saved[4], &normed = saved[5], &pre = saved[6], &post = saved[7], &mean = saved[8],
               &rstd = saved[9];
    const double dropout = ctx->saved_data["dropout"].toDouble(), eps = ctx->saved_data["eps"].toDouble();
    const auto activation = static_cast<Activation>(ctx->saved_data["activation"].toInt());
    // Added into the parameter's storage beside the critical path; a frozen parameter has none and gets no
    // gradient.
    auto beside = [&](const char* name, const std::vector<torch::Tensor>& used,
                      const std::function<void(torch::Tensor&)>& add) {
      torch::Tensor storage = ctx->saved_data[name].toTensor();
      if (storage.defined()) run_beside([&] { add(storage); }, used, storage);
    };
    const torch::Tensor g = grad_outputs[0].contiguous();
    const auto ones = ones_like_rows(g.size(0), g);

    // Critical path: g -> the activation's input gradient -> the normalized input's -> h's.
    const auto grad_post = g.mm(contract_weight);
    beside("g_contract_weight", {g, post}, [&](torch::Tensor& s) { s.addmm_(g.t(), post); });
    // The second bias's gradient (g's column sums) goes with the LayerNorm's below, in one kernel, where
    // both have storage; otherwise a product of its own.
    auto grad_gamma = ctx->saved_data["g_norm_weight"].toTensor(), grad_beta = ctx->saved_data["g_norm_bias"].toTensor();
    torch::Tensor grad_contract_bias = ctx->saved_data["g_contract_bias"].toTensor();
    const bool ln_grads = grad_gamma.defined() && grad_beta.defined();
    if (!ln_grads) beside("g_contract_bias", {g}, [&](torch::Tensor& s) { s.addmv_(g.t(), ones); });
    const auto grad_pre = activation_backward(activation, grad_post, pre, post);
    const auto grad_normed = grad_pre.mm(expand_weight);
    beside("g_expand_weight", {grad_pre, normed}, [&](torch::Tensor& s) { s.addmm_(grad_pre.t(), normed); });
    beside("g_expand_bias", {grad_pre}, [&](torch::Tensor& s) { s.addmv_(grad_pre.t(), ones); });
    const auto shape = shape_of(h, uniforms, dropout, eps);
    auto grad_h = torch::empty_like(h);
    check_launch(cuda::launch_layer_norm_dropout_backward(shape, g.data_ptr<float>(), grad_normed.data_ptr<float>(),
                                                          h.data_ptr<float>(), norm_weight.data_ptr<float>(),
                                                          mean.data_ptr<float>(), rstd.data_ptr<float>(),
                                                          grad_h.data_ptr<float>(), current_cuda_stream()),
                 "backward");
    std::vector<torch::Tensor> used{grad_normed, h, mean, rstd, g};
    if (uniforms.numel() > 0) used.push_back(uniforms);
    if (ln_grads)
      run_beside(
        [&] {
          const bool with_bias = grad_contract_bias.defined();
          check_launch(cuda::launch_layer_norm_param_grads(
                           shape, grad_normed.data_ptr<float>(), h.data_ptr<float>(), mean.data_ptr<float>(),
                           rstd.data_ptr<float>(), grad_gamma.data_ptr<float>(), grad_beta.data_ptr<float>(),
                           with_bias ? g.data_ptr<float>() : nullptr,
                           with_bias ? grad_contract_bias.data_ptr<float>() : nullptr, current_cuda_stream()),
                       "parameter gradients");
        },
        used, grad_gamma);
    // The parameters' gradients are in their storage already.
    return {grad_h, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  }
};

}  // namespace
#endif

bool fused_ln_resnet_block_supports(long width) {
#ifdef MODIFF_CUDA_KERNELS
  return cuda::layer_norm_dropout_supports(width);
#else
  (void)width;
  return false;
#endif
}

torch::Tensor fused_ln_resnet_block(const torch::Tensor& h, const LnResnetBlockParams& p,
                                    const torch::Tensor& uniforms, double dropout) {
#ifdef MODIFF_CUDA_KERNELS
  if (!h.is_cuda() || h.scalar_type() != torch::kFloat32 || h.dim() != 2 || !fused_ln_resnet_block_supports(h.size(1)))
    throw Error("internal: the fused LN-ResNet block called on rows it does not take");
  for (const auto& t : parameters_of(p))
    if (torch::GradMode::is_enabled() && t.requires_grad() && !t.grad().defined())
      throw Error("internal: the fused LN-ResNet block's parameters have no gradient storage (flat_params.h)");
  const auto input = h.contiguous();
  const auto draws = uniforms.defined() ? uniforms.contiguous() : torch::empty({0}, h.options());
  if (!torch::GradMode::is_enabled()) {
    auto in = block_input(input, draws, dropout, p, false);
    auto inner = activate(p.activation, torch::addmm(p.expand_bias, in.normed, p.expand_weight.t()));
    return torch::addmm(in.residual, inner, p.contract_weight.t());
  }
  return FusedBlock::apply(input, draws, p.norm_weight, p.norm_bias, p.expand_weight, p.expand_bias,
                           p.contract_weight, p.contract_bias, dropout, p.norm_eps,
                           static_cast<int64_t>(p.activation));
#else
  (void)h;
  (void)p;
  (void)uniforms;
  (void)dropout;
  throw Error("internal: this build has no fused LN-ResNet kernels");
#endif
}

}  // namespace modiff::agents
