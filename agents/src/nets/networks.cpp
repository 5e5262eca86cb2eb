#include "nets/networks.h"

#include <cmath>

#include "ops/denoiser_ops.h"
#include "ops/linear_accumulate.h"

namespace modiff::agents {


MlpImpl::MlpImpl(int in, const std::vector<int>& hidden, int out, Activation act, bool layer_norm_input,
                 Implementation impl)
    : activation(act), implementation(impl) {
  if (layer_norm_input) input_norm = register_module("input_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({in})));
  int width = in;
  std::vector<int> sizes = hidden;
  sizes.push_back(out);
  for (size_t i = 0; i < sizes.size(); ++i) {
    layers.push_back(register_module("fc" + std::to_string(i), torch::nn::Linear(width, sizes[i])));
    width = sizes[i];
  }
}

torch::Tensor MlpImpl::layer(size_t i, const torch::Tensor& x) {
  if (implementation == Implementation::Reference) return layers[i]->forward(x);
  return linear(x, layers[i]->weight, layers[i]->bias);
}

torch::Tensor MlpImpl::forward(torch::Tensor x) {
  if (input_norm) x = input_norm->forward(x);
  return forward_rest(layer(0, x));
}

torch::Tensor MlpImpl::forward_rest(torch::Tensor x) {
  for (size_t i = 1; i < layers.size(); ++i) x = layer(i, activate(activation, x));
  return x;
}

TwinQImpl::TwinQImpl(int obs_dim, int act_dim, int hidden, int layers, Activation act, Implementation impl)
    : activation(act), implementation(impl) {
  std::vector<int> sizes(layers, hidden);
  sizes.push_back(1);
  int in = obs_dim + act_dim;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));  // torch.nn.Linear's default init
    weights.push_back(register_parameter("w" + std::to_string(i), torch::empty({2, in, sizes[i]}).uniform_(-bound, bound)));
    biases.push_back(register_parameter("b" + std::to_string(i), torch::empty({2, 1, sizes[i]}).uniform_(-bound, bound)));
    in = sizes[i];
  }
}

std::pair<torch::Tensor, torch::Tensor> TwinQImpl::forward(const torch::Tensor& obs, const torch::Tensor& act,
                                                           bool param_grads) {
  auto x = forward_stacked(torch::cat({obs, act}, 1), param_grads);
  return {x[0], x[1]};
}

torch::Tensor TwinQImpl::forward_stacked(const torch::Tensor& obs_act, bool param_grads) {
  auto x = obs_act.unsqueeze(0).expand({2, -1, -1});
  for (size_t i = 0; i < weights.size(); ++i) {
    if (implementation == Implementation::Reference) {
      x = param_grads ? torch::baddbmm(biases[i], x, weights[i])
                      : torch::baddbmm(biases[i].detach(), x, weights[i].detach());
    } else {
      x = stacked_linear(x, weights[i], biases[i], param_grads);
    }
    if (i + 1 < weights.size()) x = activate(activation, x);
  }
  return x;
}


FourierFeaturesImpl::FourierFeaturesImpl(int out_dim, Kernels k) : kernels(k) {
  kernel = register_parameter("kernel", torch::randn({out_dim / 2, 1}) * 0.2);
}

torch::Tensor FourierFeaturesImpl::forward(const torch::Tensor& t) { return fourier_features(t, kernel, kernels); }

}  // namespace modiff::agents
