#pragma once
// The denoisers' fast implementation: the same functions as nets/denoisers.h over the same parameters,
// computed in parts. Training's forward pass splits into the time path (made once per step value: a
// [T, width] table, ops/time_path.h), the first layer's part for the data, and the rest of the network,
// so that the parts run beside each other; the sampler's chain multiplies what stays fixed along a
// reverse chain once. With modiff's kernels (Kernels, chosen when the model is built) the LN-ResNet's
// blocks run fused (ops/ln_resnet_block.h).
#include <torch/torch.h>

#include <functional>
#include <memory>

#include "nets/networks.h"
#include "ops/layers.h"

namespace modiff::agents {

// One reverse chain's calls eps_hat(x, step), step = T-1 .. 0, the observation and condition fixed.
using DenoiserChain = std::function<torch::Tensor(const torch::Tensor& x, int step)>;

struct FastDenoiser {
  virtual ~FastDenoiser() = default;
  // The function along a chain of `steps` steps: the observation's, condition's and every step's time
  // features' parts of the first layer made once, so that each step costs one small product for x and
  // the rest of the network (a third of the kernels of Diffusion-QL's sampled chain).
  virtual DenoiserChain chain(const torch::Tensor& obs, const torch::Tensor& cond, int steps) = 0;
  // Training's parts: forward_from_first_layer(add_step_rows(first_layer_data(x, obs, cond), t,
  // time_path_table(T, time_path(), ...))) = forward(x, t, obs, cond).
  virtual TimePathParams time_path() const = 0;
  virtual torch::Tensor first_layer_data(const torch::Tensor& x, const torch::Tensor& obs, const torch::Tensor& cond) = 0;
  virtual torch::Tensor forward_from_first_layer(const torch::Tensor& first) = 0;
  // True when every parameter's gradient goes through the accumulating linear layers (linear_accumulate.h),
  // which take their gradient storage when the forward pass runs (Diffusion-QL's separate BC buffer needs it).
  virtual bool only_accumulating_layers() const = 0;
  virtual Kernels kernels() const = 0;
};

std::shared_ptr<Denoiser> make_fast_ln_resnet(const DenoiserConfig& config, int obs_dim, int act_dim, Kernels kernels);
std::shared_ptr<Denoiser> make_fast_mlp(const DenoiserConfig& config, int obs_dim, int act_dim, Kernels kernels);

}  // namespace modiff::agents
