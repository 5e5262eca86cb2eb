#pragma once
// Building blocks shared by guidance modules and denoisers: MLPs with a choice
// of activation, the two time featurizations of the reference denoisers, and
// the denoisers themselves (IDQL's LN-ResNet, Diffusion-QL's MLP).
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ops/layers.h"

namespace modiff::agents {


// Linear layers with `activation` between them (none after the last);
// optionally a LayerNorm on the input (IQL's value network).
struct MlpImpl : torch::nn::Module {
  MlpImpl(int in, const std::vector<int>& hidden, int out, Activation activation, bool layer_norm_input = false);
  torch::Tensor forward(torch::Tensor x);
  // The layers after the first, from the first layer's output (before its activation).
  torch::Tensor forward_rest(torch::Tensor first_output);
  std::vector<torch::nn::Linear> layers;
  torch::nn::LayerNorm input_norm{nullptr};
  Activation activation;
};
TORCH_MODULE(Mlp);

// Two independent Q networks Q(s, a) (twin critics, clipped double-Q). Their
// weights are stacked, [2, in, out] per layer, and both run in one batched
// matrix product per layer: half the kernels of two separate networks, the
// same functions (each head is initialized as torch.nn.Linear would be).
struct TwinQImpl : torch::nn::Module {
  TwinQImpl(int obs_dim, int act_dim, int hidden, int layers, Activation activation);
  // param_grads false: the weights act as constants (gradients reach only the inputs).
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& obs, const torch::Tensor& act,
                                                  bool param_grads = true);
  // Both heads' values [2, B, 1] from the concatenated input [obs, act] ([B, obs + act]): one input
  // for several critics of the same pair (a critic and its target copy).
  torch::Tensor forward_stacked(const torch::Tensor& obs_act, bool param_grads = true);
  std::vector<torch::Tensor> weights, biases;  // [2, in, out], [2, 1, out]
  Activation activation;
};
TORCH_MODULE(TwinQ);


// IDQL's learnable Fourier features: [cos(2 pi t W), sin(2 pi t W)], W ~ N(0, 0.2^2).
struct FourierFeaturesImpl : torch::nn::Module {
  explicit FourierFeaturesImpl(int out_dim);
  torch::Tensor forward(const torch::Tensor& t);  // t: [B, 1]
  torch::Tensor kernel;                           // [out_dim / 2, 1]
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

// One reverse chain's calls eps_hat(x, step), step = T-1 .. 0, the observation and condition fixed.
using DenoiserChain = std::function<torch::Tensor(const torch::Tensor& x, int step)>;

// eps_hat(x_t, t, s, c). t is the step index (0 .. T-1) as a float column [B, 1];
// cond is [B, cond_dim] or undefined when cond_dim is 0.
struct Denoiser : torch::nn::Module {
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& obs,
                                const torch::Tensor& cond) = 0;
  // The same function along a chain of `steps` steps. The denoisers compute what does not change along
  // it once (the observation's, condition's and every step's time features' parts of the first
  // layer), so that each step costs one small product for x and the rest of the network: a third of
  // the kernels of Diffusion-QL's sampled chain. This default calls forward at every step.
  virtual DenoiserChain chain(const torch::Tensor& obs, const torch::Tensor& cond, int steps);
  // Training's forward pass in parts that can run beside each other (diffusion.h): the time path, whose
  // first-layer part is made once per step value (time_path_table, time_path.h); the first layer's part
  // for the data (x, obs, cond), [B, out]; and the rest of the network from the first layer's output.
  // Together: forward_from_first_layer(add_step_rows(first_layer_data(x, obs, cond), t, table)) =
  // forward(x, t, obs, cond).
  virtual TimePathParams time_path() const = 0;
  virtual torch::Tensor first_layer_data(const torch::Tensor& x, const torch::Tensor& obs, const torch::Tensor& cond) = 0;
  virtual torch::Tensor forward_from_first_layer(const torch::Tensor& first) = 0;
  // True when every parameter's gradient goes through the accumulating linear layers (linear_accumulate.h),
  // which take their gradient storage when the forward pass runs (Diffusion-QL's separate BC buffer needs it).
  virtual bool only_accumulating_layers() const { return false; }
};

std::shared_ptr<Denoiser> make_denoiser(const DenoiserConfig& config, int obs_dim, int act_dim);

}  // namespace modiff::agents
