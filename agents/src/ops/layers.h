#pragma once
// The primitives the readable networks (nets/) and their fused versions (ops/) share: the activations, the
// two time featurizations of the reference denoisers, and the parameters of a denoiser's time path.
#include <torch/torch.h>

#include <string>

namespace modiff::agents {

enum class Activation { Relu, Mish, Silu };
Activation parse_activation(const std::string& name);  // relu | mish | silu (swish)
std::string activation_name(Activation a);
torch::Tensor activate(Activation a, const torch::Tensor& x);

// Diffusion-QL's sinusoidal embedding of the step index: [sin(t f_k), cos(t f_k)],
// f_k = 10000^(-k / (dim/2 - 1)).
torch::Tensor sinusoidal_frequencies(int dim);
torch::Tensor sinusoidal_embedding(const torch::Tensor& t, const torch::Tensor& frequencies);

// A denoiser's time path: the features of the step value through the time MLP (Linear -> activation ->
// Linear), then the first layer's time columns. Training evaluates it once per step value (time_path.h).
struct TimePathParams {
  // IDQL's learnable Fourier features [cos(2 pi t W), sin(2 pi t W)] (W [half, 1]) where fourier_weight is
  // defined, else Diffusion-QL's sinusoidal ones [sin(t f), cos(t f)] of the constant frequencies f.
  torch::Tensor fourier_weight, frequencies;
  torch::Tensor hidden_weight, hidden_bias;
  torch::Tensor out_weight, out_bias;
  Activation activation = Activation::Silu;
  torch::Tensor first_weight, first_bias;  // the denoiser's first layer, its time columns from time_column
  long time_column = 0;
};

}  // namespace modiff::agents
