#pragma once
// The two reference denoisers in plain LibTorch, each its paper's network as a reader would write it:
// torch::nn layers and one forward pass. Their fast implementation (nets/fast_denoisers.h) derives from
// them, so both hold the same parameters under the same names.
#include <torch/torch.h>

#include <vector>

#include "nets/networks.h"

namespace modiff::agents {

// IDQL's actor: time features -> MLP; Dense(hidden) over [x, s, time (, cond)];
// residual blocks [Dropout, LayerNorm, Dense(width), act, Dense(hidden)] + skip; act; Dense(act_dim).
struct LnResnetDenoiser : Denoiser {
  LnResnetDenoiser(const DenoiserConfig& c, int obs_dim, int act_dim, Implementation implementation, Kernels kernels);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& obs,
                        const torch::Tensor& cond) override;

  Activation activation;
  long time_width;  // of the time MLP's output
  long action_dim, obs_width;
  FourierFeatures time_features{nullptr};
  Mlp time_mlp{nullptr};
  torch::nn::Linear input{nullptr}, output{nullptr};
  std::vector<torch::nn::Dropout> dropouts;
  std::vector<torch::nn::LayerNorm> norms;
  std::vector<torch::nn::Linear> expand, contract;
};

// Diffusion-QL's actor: sinusoidal(time_dim) -> Linear(2 time_dim) -> Mish -> Linear(time_dim);
// [x, time, s (, cond)] -> blocks x (Linear hidden, Mish) -> Linear(act_dim).
struct MlpDenoiser : Denoiser {
  MlpDenoiser(const DenoiserConfig& c, int obs_dim, int act_dim, Implementation implementation);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& obs,
                        const torch::Tensor& cond) override;

  torch::Tensor frequencies;  // constant: computed once, not per call
  Mlp time_mlp{nullptr}, body{nullptr};
  long action_dim, obs_width;
};

}  // namespace modiff::agents
