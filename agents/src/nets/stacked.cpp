#include "nets/stacked.h"

#include <cmath>

#include "modiff/common/error.h"
#include "ops/linear_accumulate.h"

namespace modiff::agents {

namespace {
// Rows start 64-byte aligned, so that each run's flat tensors keep the alignment modiff's Adam kernel
// vectorizes over (cuda/flat_adam.cu).
constexpr long kRowAlignment = 16;
}  // namespace

StackedParams::StackedParams(const std::vector<Run>& runs, WeightUse use) : use_(use) {
  if (runs.empty()) throw Error("internal: a stack of no runs");
  for (size_t i = 0; i < runs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (runs[i].params == runs[j].params) throw Error("internal: one network twice in a stack");
  const FlatParams& first = *runs.front().params;
  const long n = first.values.numel();
  const long stride = (n + kRowAlignment - 1) / kRowAlignment * kRowAlignment;
  const long k = static_cast<long>(runs.size());
  const auto options = first.values.options();
  values_ = torch::zeros({k, stride}, options);
  const bool trainable = first.grads.defined();
  if (trainable) grads_ = torch::zeros({k, stride}, options);
  for (long i = 0; i < k; ++i) {
    const Run& run = runs[static_cast<size_t>(i)];
    if (run.params->values.numel() != n || run.params->grads.defined() != trainable)
      throw Error("internal: runs of different networks in one stack");
    move_parameters(*run.module, *run.params, values_[i].narrow(0, 0, n),
                    trainable ? grads_[i].narrow(0, 0, n) : torch::Tensor());
  }
  first_row_ = values_.data_ptr<float>();
}

StackedParams::StackedParams(const FlatParams& layout, const torch::Tensor& rows)
    : use_(WeightUse::Once), first_row_(layout.values.data_ptr<float>()), values_(rows) {
  if (rows.dim() != 2 || rows.size(1) < layout.values.numel())
    throw Error("internal: stacked rows narrower than the network they hold");
}

long StackedParams::offset_of(const torch::Tensor& first_run_parameter) const {
  const long offset = first_run_parameter.data_ptr<float>() - first_row_;
  if (offset < 0 || offset + first_run_parameter.numel() > values_.size(1))
    throw Error("internal: a parameter outside the first run's row of its stack");
  return offset;
}

StackedParams::Leaf& StackedParams::leaf(const torch::Tensor& first_run_parameter, bool written_by_op) {
  const long offset = offset_of(first_run_parameter);
  for (auto& l : leaves_)
    if (l.offset == offset) {
      if (l.written_by_op || written_by_op) throw Error("internal: a stacked product's weight used twice in one pass");
      return l;
    }
  const long n = first_run_parameter.numel();
  std::vector<long> sizes{values_.size(0)};
  for (long s : first_run_parameter.sizes()) sizes.push_back(s);
  // A leaf over the shared storage, so that autograd records what uses it.
  leaves_.push_back({offset, values_.narrow(1, offset, n).view(sizes).detach().requires_grad_(true),
                     grads_.narrow(1, offset, n).view(sizes), written_by_op});
  return leaves_.back();
}

torch::Tensor StackedParams::operator()(const torch::Tensor& first_run_parameter) {
  if (!grads_.defined() || !torch::GradMode::is_enabled()) return constant(first_run_parameter);
  return leaf(first_run_parameter, false).leaf;
}

StackedParams::Param StackedParams::param(const torch::Tensor& first_run_parameter) {
  if (!grads_.defined() || !torch::GradMode::is_enabled())
    return {constant(first_run_parameter), torch::Tensor()};
  // Repeated uses: autograd's own products, their gradients accumulated in the leaf.
  if (use_ == WeightUse::Repeated) return {leaf(first_run_parameter, false).leaf, torch::Tensor()};
  const Leaf& l = leaf(first_run_parameter, true);
  return {l.leaf, l.grads};
}

torch::Tensor StackedParams::constant(const torch::Tensor& first_run_parameter) const {
  std::vector<long> sizes{values_.size(0)};
  for (long s : first_run_parameter.sizes()) sizes.push_back(s);
  return values_.narrow(1, offset_of(first_run_parameter), first_run_parameter.numel()).view(sizes);
}

void StackedParams::backward(const torch::Tensor& loss) {
  loss.backward();
  torch::NoGradGuard no_grad;
  for (const auto& l : leaves_) {
    if (l.written_by_op) continue;
    if (l.leaf.grad().defined()) l.grads.copy_(l.leaf.grad());
    else l.grads.zero_();
  }
  leaves_.clear();
}

torch::Tensor StackedParams::linear(const torch::nn::Linear& layer, const torch::Tensor& x) {
  Param w = param(layer->weight), b = param(layer->bias);
  auto transposed = [](const torch::Tensor& t) { return t.defined() ? t.transpose(1, 2) : t; };
  auto as_row = [](const torch::Tensor& t) { return t.defined() ? t.unsqueeze(1) : t; };
  return stacked_matmul(x, {transposed(w.value), transposed(w.grad)}, {as_row(b.value), as_row(b.grad)});
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// x W + b with the parameters' gradients written where the caller says (stacked_matmul). Without a bias, `bias`
// and `grad_bias` are empty tensors (autograd's functions take no undefined ones).
struct StackedMatmul : torch::autograd::Function<StackedMatmul> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, const torch::Tensor& grad_weight,
                               const torch::Tensor& grad_bias) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["grad_weight"] = grad_weight;
    ctx->saved_data["grad_bias"] = grad_bias;
    const auto w = weight.detach();
    return bias.numel() > 0 ? torch::baddbmm(bias.detach(), x, w) : torch::bmm(x, w);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], w = saved[1].detach();
    const auto& g = grad_outputs[0];  // [K, B, out]
    auto grad_weight = ctx->saved_data["grad_weight"].toTensor();
    auto grad_bias = ctx->saved_data["grad_bias"].toTensor();
    if (grad_weight.defined()) at::bmm_out(grad_weight, x.transpose(1, 2), g);
    if (grad_bias.numel() > 0) {
      const auto ones = ones_like_rows(g.size(1), g).view({1, 1, -1}).expand({g.size(0), 1, g.size(1)});
      at::bmm_out(grad_bias, ones, g);
    }
    torch::Tensor grad_x;
    if (ctx->needs_input_grad(0)) grad_x = torch::bmm(g, w.transpose(1, 2));
    return {grad_x, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor stacked_matmul(const torch::Tensor& x, const StackedParams::Param& weight,
                             const StackedParams::Param& bias) {
  if (!weight.grad.defined()) {
    const auto w = weight.value;
    return bias.value.defined() ? torch::baddbmm(bias.value, x, w) : torch::bmm(x, w);
  }
  const auto none = torch::empty({0}, x.options());
  return StackedMatmul::apply(x, weight.value, bias.value.defined() ? bias.value : none, weight.grad,
                              bias.grad.defined() ? bias.grad : none);
}

torch::Tensor stacked_layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                 double eps) {
  return torch::addcmul(bias.unsqueeze(1), torch::layer_norm(x, {x.size(-1)}, {}, {}, eps), weight.unsqueeze(1));
}

namespace {

// IDQL's learnable Fourier features [cos(2 pi t W), sin(2 pi t W)] of t [K, B, 1], W [K, half, 1].
torch::Tensor stacked_fourier_features(const torch::Tensor& t, StackedParams::Param kernel) {
  kernel.value = kernel.value.transpose(1, 2);
  if (kernel.grad.defined()) kernel.grad = kernel.grad.transpose(1, 2);
  auto f = (2 * M_PI) * stacked_matmul(t, kernel, {});
  return torch::cat({f.cos(), f.sin()}, 2);
}

}  // namespace

torch::Tensor stacked_mlp(const MlpImpl& first_run, StackedParams& p, torch::Tensor x) {
  if (first_run.input_norm)
    x = stacked_layer_norm(x, p(first_run.input_norm->weight), p(first_run.input_norm->bias),
                           first_run.input_norm->options.eps());
  for (size_t i = 0; i < first_run.layers.size(); ++i) {
    if (i > 0) x = activate(first_run.activation, x);
    x = p.linear(first_run.layers[i], x);
  }
  return x;
}

torch::Tensor stacked_mlp_denoiser(const MlpDenoiser& net, StackedParams& p, const torch::Tensor& x,
                                   const torch::Tensor& t, const torch::Tensor& obs) {
  const auto features = sinusoidal_embedding(t.flatten(), net.frequencies).view({t.size(0), t.size(1), -1});
  auto time = stacked_mlp(*net.time_mlp, p, features);
  return stacked_mlp(*net.body, p, torch::cat({x, time, obs}, 2));
}

DenoiserChain stacked_mlp_chain(const MlpDenoiser& net, StackedParams& p, const torch::Tensor& obs, int steps) {
  const long runs = obs.size(0), act = net.action_dim;
  const auto step_values = torch::arange(steps, obs.options());
  const auto features = sinusoidal_embedding(step_values, net.frequencies).unsqueeze(0).expand({runs, steps, -1});
  const auto time = stacked_mlp(*net.time_mlp, p, features);  // [K, T, time]
  const auto& first = net.body->layers.front();
  const auto weight = p(first->weight).transpose(1, 2);  // [K, in, hidden]; input columns [x | time | obs]
  const long time_dim = time.size(2);
  const auto per_step = torch::bmm(time, weight.narrow(1, act, time_dim));  // [K, T, hidden]
  const auto fixed = torch::baddbmm(p(first->bias).unsqueeze(1), obs, weight.narrow(1, act + time_dim, net.obs_width));
  const auto x_weight = weight.narrow(1, 0, act);
  const MlpImpl* body = net.body.get();
  return [&p, body, per_step, fixed, x_weight](const torch::Tensor& x, int step) {
    auto h = torch::baddbmm(fixed + per_step.narrow(1, step, 1), x, x_weight);
    for (size_t i = 1; i < body->layers.size(); ++i) h = p.linear(body->layers[i], activate(body->activation, h));
    return h;
  };
}

torch::Tensor stacked_ln_resnet(const LnResnetDenoiser& net, StackedParams& p, const torch::Tensor& x,
                                const torch::Tensor& t, const torch::Tensor& obs, const torch::Tensor& uniforms,
                                double dropout) {
  auto time = stacked_mlp(*net.time_mlp, p, stacked_fourier_features(t, p.param(net.time_features->kernel)));
  auto h = p.linear(net.input, torch::cat({x, obs, time}, 2));
  for (size_t b = 0; b < net.norms.size(); ++b) {
    auto in = h;
    if (uniforms.defined()) {
      const auto keep = (uniforms.select(1, static_cast<long>(b)) >= dropout).to(h.scalar_type());
      in = h * keep * (1.0 / (1.0 - dropout));
    }
    auto r = stacked_layer_norm(in, p(net.norms[b]->weight), p(net.norms[b]->bias), net.norms[b]->options.eps());
    h = h + p.linear(net.contract[b], activate(net.activation, p.linear(net.expand[b], r)));
  }
  return p.linear(net.output, activate(net.activation, h));
}

DenoiserChain stacked_ln_resnet_chain(const LnResnetDenoiser& net, StackedParams& p, const torch::Tensor& obs,
                                      int steps) {
  const long runs = obs.size(0), act = net.action_dim;
  const auto step_values = torch::arange(steps, obs.options()).view({1, steps, 1}).expand({runs, steps, 1});
  const auto time = stacked_mlp(*net.time_mlp, p, stacked_fourier_features(step_values, p.param(net.time_features->kernel)));
  const auto weight = p(net.input->weight).transpose(1, 2);  // [K, in, hidden]; input columns [x | obs | time]
  const auto per_step = torch::bmm(time, weight.narrow(1, act + net.obs_width, time.size(2)));  // [K, T, hidden]
  const auto fixed = torch::baddbmm(p(net.input->bias).unsqueeze(1), obs, weight.narrow(1, act, net.obs_width));
  const auto x_weight = weight.narrow(1, 0, act);
  const LnResnetDenoiser* body = &net;
  return [&p, body, per_step, fixed, x_weight](const torch::Tensor& x, int step) {
    auto h = torch::baddbmm(fixed + per_step.narrow(1, step, 1), x, x_weight);
    for (size_t b = 0; b < body->norms.size(); ++b) {
      const auto& norm = body->norms[b];
      auto r = stacked_layer_norm(h, p(norm->weight), p(norm->bias), norm->options.eps());
      h = h + p.linear(body->contract[b], activate(body->activation, p.linear(body->expand[b], r)));
    }
    return p.linear(body->output, activate(body->activation, h));
  };
}

std::pair<torch::Tensor, torch::Tensor> stacked_twin_q(const TwinQImpl& net, StackedParams& p,
                                                       const torch::Tensor& obs_act, bool param_grads) {
  auto param = [&](const torch::Tensor& parameter) {
    return param_grads ? p.param(parameter) : StackedParams::Param{p.constant(parameter), torch::Tensor()};
  };
  torch::Tensor heads[2] = {obs_act, obs_act};
  for (size_t i = 0; i < net.weights.size(); ++i) {
    const auto w = param(net.weights[i]), b = param(net.biases[i]);  // [K, 2, in, out], [K, 2, 1, out]
    auto head_of = [](const StackedParams::Param& both, long head) {
      return StackedParams::Param{both.value.select(1, head), both.grad.defined() ? both.grad.select(1, head) : both.grad};
    };
    for (long head = 0; head < 2; ++head) {
      heads[head] = stacked_matmul(heads[head], head_of(w, head), head_of(b, head));
      if (i + 1 < net.weights.size()) heads[head] = activate(net.activation, heads[head]);
    }
  }
  return {heads[0], heads[1]};
}

}  // namespace modiff::agents
