#pragma once
// DDPM over actions: noise schedules (VP as in IDQL and Diffusion-QL, cosine,
// linear), the noise-prediction loss, and the two reference samplers, each
// keeping actions in [-1, 1].
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "nets/fast_denoisers.h"
#include "nets/networks.h"

namespace modiff::agents {

struct DiffusionConfig {
  std::string schedule = "vp";     // vp | cosine | linear
  int steps = 5;                   // T
  std::string sampler = "eps-clip";  // eps-clip (IDQL: clip x each step) | posterior (Diffusion-QL: clip x0) |
                                     // dpm-solver (EDP: the probability-flow ODE, solve_ode)
  int solver_passes = 15;          // dpm-solver: denoiser passes per sample (1..steps)
  std::string loss = "sum";        // sum over action dims then batch mean (IDQL) | mean over elements (Diffusion-QL)
};

// beta_t, alpha_t = 1 - beta_t, alphabar_t for t = 1..T, stored at index t - 1.
struct NoiseSchedule {
  torch::Tensor betas, alphas, alphas_cumprod;
  static NoiseSchedule make(const std::string& kind, int steps, torch::Device device);
};

class Ddpm {
 public:
  Ddpm(const DiffusionConfig& config, int act_dim, torch::Device device);

  // Noise-prediction loss for clean actions x0 under observation obs (and condition cond, may be undefined):
  // x0 noised to a random step t, eps_hat(x_t, t, obs, cond) against the noise. A reference denoiser
  // computes it through its forward pass; a fast one in parts (fast_prediction).
  torch::Tensor loss(Denoiser& model, const torch::Tensor& x0, const torch::Tensor& obs, const torch::Tensor& cond);
  // The same loss (the same draws) and, from the same pass, the one-step estimate of the clean actions from the
  // noised ones, (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) clipped to [-1, 1], with its gradient (EDP's
  // policy improvement acts on it instead of on a sampled chain).
  struct Prediction {
    torch::Tensor loss, x0_estimate;
  };
  Prediction predict(Denoiser& model, const torch::Tensor& x0, const torch::Tensor& obs, const torch::Tensor& cond);

  // Draws actions for each row of obs, from Gaussian noise through all T steps. Differentiable
  // when grad mode is on (Diffusion-QL's Q-loss backpropagates through the chain).
  // With cond and guide_weight: classifier-free guidance, eps = eps(null) + w (eps(cond) - eps(null)),
  // both evaluated in one batched pass.
  // Noise comes from `noise` ([T, B, act_dim]: the initial draw, then one per
  // step) when given, else from `generator`, else from LibTorch's default one.
  torch::Tensor sample(Denoiser& model, const torch::Tensor& obs, const torch::Tensor& cond = {},
                       double guide_weight = 1.0, c10::optional<at::Generator> generator = c10::nullopt,
                       const torch::Tensor& noise = {});
  // The reverse chain of `sample` (eps-clip or posterior) over any eps_hat(x, step), step T-1 .. 0: `noise()` gives
  // each draw in turn (the start, then one per step but the last). x takes the draws' shape: a stack's
  // [K, B, act] chain (nets/stacked.h) samples K runs at once.
  torch::Tensor reverse_chain(const DenoiserChain& eps_of, const std::function<torch::Tensor()>& noise) const;

  // The probability-flow ODE from `start` (x at step index T-1: noise) to actions, by DPM-Solver++ (Lu et al.
  // 2022, "DPM-Solver++": data prediction, second-order multistep, first order at the first step) over this
  // discrete schedule: `evaluations` denoiser passes at step indices from T-1 down to 0 (the nearest to points
  // evenly spaced in log signal-to-noise ratio), each estimate of x0 clipped to [-1, 1], the last estimate returned. Deterministic given `start`; EDP's sampler
  // (issue 20), far fewer passes than the T of the training chain. 1 <= evaluations <= T.
  torch::Tensor solve_ode(Denoiser& model, const torch::Tensor& obs, int evaluations, const torch::Tensor& start,
                          const torch::Tensor& cond = {});
  // The same over any eps_hat(x, step) (a stack's chain, nets/stacked.h): x takes `start`'s shape.
  torch::Tensor solve_ode(const DenoiserChain& eps_of, int evaluations, const torch::Tensor& start) const;

  const DiffusionConfig& config() const { return config_; }
  // [T, 2]: sqrt(alphabar_t), sqrt(1 - alphabar_t) per step index (x_t = row[0] x0 + row[1] noise).
  const torch::Tensor& noising() const { return noising_; }

 private:
  std::vector<int> solver_indices(int evaluations, const std::function<double(int)>& lambda) const;
  Prediction noise_prediction(Denoiser& model, const torch::Tensor& x0, const torch::Tensor& obs,
                               const torch::Tensor& cond, bool estimate);
  Prediction fast_prediction(FastDenoiser& model, const torch::Tensor& x0, const torch::Tensor& obs,
                             const torch::Tensor& cond, bool estimate);
  torch::Tensor noise_prediction_error(const torch::Tensor& eps, const torch::Tensor& noise, Kernels kernels) const;

  DiffusionConfig config_;
  long act_dim_;
  NoiseSchedule schedule_;
  torch::Tensor noising_;  // [T, 2] on the device: sqrt(alphabar_t), sqrt(1 - alphabar_t)
  std::vector<double> beta_, alpha_, alphabar_;  // host copies: the sampler's per-step constants
};

}  // namespace modiff::agents
