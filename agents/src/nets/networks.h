#pragma once
// Building blocks shared by guidance modules and denoisers: MLPs with a choice of activation, twin
// critics, IDQL's Fourier features, and the denoisers' interface (IDQL's LN-ResNet and Diffusion-QL's MLP
// in plain LibTorch: nets/denoisers.h; their fast implementation: nets/fast_denoisers.h).
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ops/layers.h"
#include "runtime/implementation.h"

namespace modiff::agents {


// Linear layers with `activation` between them (none after the last); optionally a LayerNorm on the input
// (IQL's value network). The reference implementation runs torch::nn::Linear's forward; the fast one the
// accumulating layers (linear_accumulate.h) over the same parameters.
struct MlpImpl : torch::nn::Module {
  MlpImpl(int in, const std::vector<int>& hidden, int out, Activation activation, bool layer_norm_input,
          Implementation implementation);
  torch::Tensor forward(torch::Tensor x);
  // The layers after the first, from the first layer's output (before its activation).
  torch::Tensor forward_rest(torch::Tensor first_output);
  std::vector<torch::nn::Linear> layers;
  torch::nn::LayerNorm input_norm{nullptr};
  Activation activation;
  Implementation implementation;

 private:
  torch::Tensor layer(size_t i, const torch::Tensor& x);
};
TORCH_MODULE(Mlp);

// Two independent Q networks Q(s, a) (twin critics, clipped double-Q). Their weights are stacked,
// [2, in, out] per layer, and both run in one batched matrix product per layer: half the kernels of two
// separate networks, the same functions (each head is initialized as torch.nn.Linear would be). The
// reference implementation multiplies with torch::baddbmm; the fast one with the accumulating layers.
struct TwinQImpl : torch::nn::Module {
  TwinQImpl(int obs_dim, int act_dim, int hidden, int layers, Activation activation, Implementation implementation);
  // param_grads false: the weights act as constants (gradients reach only the inputs).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& obs, const torch::Tensor& act,
                                                  bool param_grads = true);
  // Both heads' values [2, B, 1] from the concatenated input [obs, act] ([B, obs + act]): one input
  // for several critics of the same pair (a critic and its target copy).
  torch::Tensor forward_stacked(const torch::Tensor& obs_act, bool param_grads = true);
  std::vector<torch::Tensor> weights, biases;  // [2, in, out], [2, 1, out]
  Activation activation;
  Implementation implementation;
};
TORCH_MODULE(TwinQ);


// IDQL's learnable Fourier features: [cos(2 pi t W), sin(2 pi t W)], W ~ N(0, 0.2^2).
struct FourierFeaturesImpl : torch::nn::Module {
  FourierFeaturesImpl(int out_dim, Kernels kernels);
  torch::Tensor forward(const torch::Tensor& t);  // t: [B, 1]
  torch::Tensor kernel;                           // [out_dim / 2, 1]
  Kernels kernels;
};
TORCH_MODULE(FourierFeatures);


// Which network predicts the noise, and its sizes. Saved in every diffusion manifest.
struct DenoiserConfig {
  std::string kind = "ln-resnet";  // ln-resnet (IDQL) | mlp (Diffusion-QL)
  int hidden = 256;
  int blocks = 3;                  // ln-resnet residual blocks / mlp hidden layers
  int block_width = 1024;          // ln-resnet inner width
  double dropout = 0.1;            // ln-resnet
  int time_dim = 128;              // Fourier features (ln-resnet) or sinusoidal (mlp: 16)
  Activation activation = Activation::Silu;
  int cond_dim = 0;                // 0, or 2 for classifier-free label conditioning [label, present]
};

struct FastDenoiser;  // nets/fast_denoisers.h

// eps_hat(x_t, t, s, c): the noise a denoiser predicts. t is the step index (0 .. T-1) as a float column
// [B, 1]; cond is [B, cond_dim] or undefined when cond_dim is 0.
struct Denoiser : torch::nn::Module {
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& obs,
                                const torch::Tensor& cond) = 0;
  // The fast implementation's parts of the same function (training's forward pass in parts, the sampler's
  // chain); null for the reference implementation, which only has forward.
  virtual FastDenoiser* fast() { return nullptr; }
};

// The denoiser `config` names, in `implementation`, on `device`: chosen once, here (docs/architecture.md).
std::shared_ptr<Denoiser> make_denoiser(const DenoiserConfig& config, int obs_dim, int act_dim,
                                        Implementation implementation, torch::Device device);

}  // namespace modiff::agents
