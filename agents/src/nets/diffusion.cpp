#include "nets/diffusion.h"

#include "ops/denoiser_ops.h"

#include <cmath>

#include "runtime/cuda_support.h"
#include "ops/time_path.h"

#include "modiff/common/error.h"

namespace modiff::agents {

NoiseSchedule NoiseSchedule::make(const std::string& kind, int steps, torch::Device device) {
  if (steps < 1 || steps > 1000) throw Error("diffusion steps must be within 1..1000, got " + std::to_string(steps));
  std::vector<double> betas(steps);
  const double T = steps;
  if (kind == "vp") {
    // The variance-preserving SDE discretized (Song et al.), as IDQL and Diffusion-QL use it.
    const double b_min = 0.1, b_max = 10.0;
    for (int i = 0; i < steps; ++i) {
      const double t = i + 1;
      betas[i] = 1 - std::exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * t - 1) / (T * T));
    }
  } else if (kind == "cosine") {
    // Nichol & Dhariwal: alphabar(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2), s = 0.008.
    auto alphabar = [&](double t) { return std::pow(std::cos((t / T + 0.008) / 1.008 * M_PI / 2), 2); };
    for (int i = 0; i < steps; ++i) betas[i] = std::min(1 - alphabar(i + 1) / alphabar(i), 0.999);
  } else if (kind == "linear") {
    // Ho et al.'s 1e-4 .. 2e-2 over 1000 steps, rescaled to T steps so that the total noise is alike.
    const double scale = 1000.0 / T;
    for (int i = 0; i < steps; ++i)
      betas[i] = std::min(scale * (1e-4 + (2e-2 - 1e-4) * (steps == 1 ? 0.0 : i / (T - 1))), 0.999);
  } else {
    throw Error("unknown noise schedule '" + kind + "' (vp, cosine, linear)");
  }
  NoiseSchedule s;
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  s.betas = torch::tensor(betas, opts).to(torch::kFloat32).to(device);
  s.alphas = 1 - s.betas;
  s.alphas_cumprod = torch::cumprod(s.alphas, 0);
  return s;
}

Ddpm::Ddpm(const DiffusionConfig& config, int act_dim, torch::Device device)
    : config_(config),
      act_dim_(act_dim), schedule_(NoiseSchedule::make(config.schedule, config.steps, device)) {
  if (config.sampler != "eps-clip" && config.sampler != "posterior" && config.sampler != "dpm-solver")
    throw Error("unknown sampler '" + config.sampler + "' (eps-clip, posterior, dpm-solver)");
  if (config.sampler == "dpm-solver" && (config.solver_passes < 1 || config.solver_passes > config.steps))
    throw Error("policy.solver_passes must be from 1 to policy.diffusion_steps (" + std::to_string(config.steps) +
                "), got " + std::to_string(config.solver_passes));
  if (config.loss != "sum" && config.loss != "mean") throw Error("unknown diffusion loss '" + config.loss + "' (sum, mean)");
  auto cpu = [](const torch::Tensor& t) {
    auto c = t.to(torch::kCPU).to(torch::kFloat64).contiguous();
    return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  };
  beta_ = cpu(schedule_.betas);
  alpha_ = cpu(schedule_.alphas);
  alphabar_ = cpu(schedule_.alphas_cumprod);
  // [sqrt(alphabar_t), sqrt(1 - alphabar_t)] per step, in double then float: the loss gathers one row
  // per sample instead of gathering alphabar and taking two roots on the device.
  std::vector<double> rows;
  for (size_t i = 0; i < alphabar_.size(); ++i) rows.insert(rows.end(), {std::sqrt(alphabar_[i]), std::sqrt(1 - alphabar_[i])});
  noising_ = torch::tensor(rows, torch::TensorOptions().dtype(torch::kFloat64))
                 .view({static_cast<long>(alphabar_.size()), 2})
                 .to(torch::kFloat32)
                 .to(device);
}

torch::Tensor Ddpm::loss(Denoiser& model, const torch::Tensor& x0, const torch::Tensor& obs, const torch::Tensor& cond) {
  return noise_prediction(model, x0, obs, cond, false).loss;
}

Ddpm::Prediction Ddpm::predict(Denoiser& model, const torch::Tensor& x0, const torch::Tensor& obs,
                               const torch::Tensor& cond) {
  return noise_prediction(model, x0, obs, cond, true);
}

namespace {
// x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), clipped; rows [B, 2] hold sqrt(abar_t), sqrt(1 - abar_t).
torch::Tensor clean_estimate(const torch::Tensor& x_t, const torch::Tensor& eps, const torch::Tensor& rows) {
  return torch::clamp((x_t - rows.narrow(1, 1, 1) * eps) / rows.narrow(1, 0, 1), -1.0, 1.0);
}
}  // namespace

Ddpm::Prediction Ddpm::noise_prediction(Denoiser& model, const torch::Tensor& x0, const torch::Tensor& obs,
                                        const torch::Tensor& cond, bool estimate) {
  if (FastDenoiser* fast = model.fast()) return fast_prediction(*fast, x0, obs, cond, estimate);
  const long batch = x0.size(0);
  auto t = torch::randint(config_.steps, {batch}, x0.options().dtype(torch::kLong));
  auto rows = noising_.index_select(0, t);  // [batch, 2]: sqrt(alphabar_t), sqrt(1 - alphabar_t)
  auto noise = torch::randn_like(x0);
  auto x_t = rows.narrow(1, 0, 1) * x0 + rows.narrow(1, 1, 1) * noise;
  auto eps = model.forward(x_t, t.unsqueeze(1).to(x0.scalar_type()), obs, cond);
  return {noise_prediction_error(eps, noise, Kernels{}),
          estimate ? clean_estimate(x_t, eps, rows) : torch::Tensor()};
}

torch::Tensor Ddpm::noise_prediction_error(const torch::Tensor& eps, const torch::Tensor& noise, Kernels kernels) const {
  // "sum": squared error summed over action dimensions, then the batch mean; "mean": over every element.
  return squared_error_loss(eps, noise, config_.loss == "sum", kernels);
}

// The same loss, its draws in the same order. The time features' path (a handful of small kernels) depends
// on the network's parameters alone: it makes the first layer's part for every step value on a parallel
// branch (CUDA) while the actions are noised and the data's part is multiplied; then each row takes its
// step's part (time_path.h).
Ddpm::Prediction Ddpm::fast_prediction(FastDenoiser& model, const torch::Tensor& x0, const torch::Tensor& obs,
                                      const torch::Tensor& cond, bool estimate) {
  const long batch = x0.size(0);
  auto t = torch::randint(config_.steps, {batch}, x0.options().dtype(torch::kLong));
  torch::Tensor noise, data_part, rows, x_t;
  StepTable table;
  const TimePathParams time_path = model.time_path();
  run_concurrently(x0.device(), {[&] {
                                   rows = noising_.index_select(0, t);  // [batch, 2]
                                   noise = torch::randn_like(x0);
                                   x_t = torch::addcmul(rows.narrow(1, 0, 1) * x0, rows.narrow(1, 1, 1), noise);
                                   data_part = model.first_layer_data(x_t, obs, cond);
                                 },
                                 [&] {
                                   table = time_path_table(config_.steps, time_path, x0.options(), model.kernels());
                                 }});
  auto eps = model.forward_from_first_layer(add_step_rows(data_part, t, table, time_path));
  return {noise_prediction_error(eps, noise, model.kernels()),
          estimate ? clean_estimate(x_t, eps, rows) : torch::Tensor()};
}

namespace {

// eps_hat(x, step) along one reverse chain: the fast denoiser's chain, or the forward pass at every step.
DenoiserChain chain_of(Denoiser& model, const torch::Tensor& obs, const torch::Tensor& cond, int steps) {
  if (FastDenoiser* fast = model.fast()) return fast->chain(obs, cond, steps);
  return [&model, obs, cond](const torch::Tensor& x, int step) {
    return model.forward(x, torch::full({x.size(0), 1}, static_cast<double>(step), x.options()), obs, cond);
  };
}

}  // namespace

torch::Tensor Ddpm::sample(Denoiser& model, const torch::Tensor& obs, const torch::Tensor& cond, double guide_weight,
                           c10::optional<at::Generator> generator, const torch::Tensor& given_noise) {
  const long batch = obs.size(0);
  int draws = 0;
  auto noise = [&] {
    if (given_noise.defined()) return given_noise[draws++];
    return torch::randn({batch, act_dim_}, generator, obs.options());
  };
  // Classifier-free guidance: one pass over [conditional; unconditional] rows (the null condition is
  // all zeros), eps = eps(null) + w (eps(cond) - eps(null)).
  const bool guided = cond.defined() && guide_weight != 1.0;
  if (config_.sampler == "dpm-solver") {
    if (guided) throw Error("classifier-free guidance samples with eps-clip or posterior, not dpm-solver");
    return solve_ode(model, obs, config_.solver_passes, noise(), cond);
  }
  const auto chain_obs = guided ? torch::cat({obs, obs}) : obs;
  const auto chain_cond = guided ? torch::cat({cond, torch::zeros_like(cond)}) : cond;
  const DenoiserChain eps_of = chain_of(model, chain_obs, chain_cond, config_.steps);
  if (!guided) return reverse_chain(eps_of, noise);
  return reverse_chain(
      [&](const torch::Tensor& x, int step) {
        auto parts = eps_of(torch::cat({x, x}), step).chunk(2, 0);
        return parts[1] + guide_weight * (parts[0] - parts[1]);
      },
      noise);
}

torch::Tensor Ddpm::reverse_chain(const DenoiserChain& eps_of, const std::function<torch::Tensor()>& noise) const {
  auto x = noise();
  for (int i = config_.steps - 1; i >= 0; --i) {
    const auto eps = eps_of(x, i);
    const double beta = beta_[i], alpha = alpha_[i], abar = alphabar_[i];
    if (config_.sampler == "eps-clip") {
      x = torch::add(x, eps, -beta / std::sqrt(1 - abar)) * (1 / std::sqrt(alpha));
      if (i > 0) x = torch::add(x, noise(), std::sqrt(beta));
      x = torch::clamp(x, -1.0, 1.0);
    } else if (config_.sampler == "posterior") {
      auto x0 = torch::clamp(torch::add(x * std::sqrt(1 / abar), eps, -std::sqrt(1 / abar - 1)), -1.0, 1.0);
      const double abar_prev = i > 0 ? alphabar_[i - 1] : 1.0;
      x = torch::add(x0 * (beta * std::sqrt(abar_prev) / (1 - abar)), x, (1 - abar_prev) * std::sqrt(alpha) / (1 - abar));
      if (i > 0) x = torch::add(x, noise(), std::sqrt(beta * (1 - abar_prev) / (1 - abar)));
    } else {
      throw Error("internal: the reverse chain of sampler '" + config_.sampler + "'");
    }
  }
  return torch::clamp(x, -1.0, 1.0);
}

// The step indices of the solver's passes, T-1 down to 0: the nearest to points evenly spaced in lambda (the
// spacing DPM-Solver recommends: even in the step index, the steps near either end of a linear schedule span
// several units of lambda, and 15 passes missed the Gaussian case's exact end by 13% against 1.7%), each below the
// one before, so that there are exactly `evaluations` of them.
std::vector<int> Ddpm::solver_indices(int evaluations, const std::function<double(int)>& lambda) const {
  const int T = config_.steps;
  if (evaluations == 1) return {T - 1};
  std::vector<int> index;
  for (int j = 0; j < evaluations; ++j) {
    const double target = lambda(T - 1) + (lambda(0) - lambda(T - 1)) * j / (evaluations - 1);
    int nearest = 0;
    for (int i = 1; i < T; ++i)
      if (std::abs(lambda(i) - target) < std::abs(lambda(nearest) - target)) nearest = i;
    if (!index.empty()) nearest = std::min(nearest, index.back() - 1);
    index.push_back(std::max(nearest, evaluations - 1 - j));
  }
  return index;
}

torch::Tensor Ddpm::solve_ode(Denoiser& model, const torch::Tensor& obs, int evaluations, const torch::Tensor& start,
                              const torch::Tensor& cond) {
  return solve_ode(chain_of(model, obs, cond, config_.steps), evaluations, start);
}

torch::Tensor Ddpm::solve_ode(const DenoiserChain& eps_of, int evaluations, const torch::Tensor& start) const {
  const int T = config_.steps;
  if (evaluations < 1 || evaluations > T)
    throw Error("the ODE solver takes 1 to " + std::to_string(T) + " denoiser passes, got " + std::to_string(evaluations));
  auto alpha = [&](int i) { return std::sqrt(alphabar_[i]); };
  auto sigma = [&](int i) { return std::sqrt(1 - alphabar_[i]); };
  auto lambda = [&](int i) { return std::log(alpha(i) / sigma(i)); };  // half the log signal-to-noise ratio
  const std::vector<int> index = solver_indices(evaluations, lambda);
  torch::Tensor x = start, previous_x0;
  double previous_h = 0;
  for (size_t j = 0;; ++j) {
    const int s = index[j];
    const auto x0 = torch::clamp((x - sigma(s) * eps_of(x, s)) / alpha(s), -1.0, 1.0);
    if (j + 1 == index.size()) return x0;
    const int t = index[j + 1];
    const double h = lambda(t) - lambda(s);
    // The second-order multistep correction: x0's change per unit of lambda, from the last two estimates.
    auto d = x0;
    if (previous_x0.defined()) {
      const double r = previous_h / h;
      d = x0 * (1 + 1 / (2 * r)) - previous_x0 * (1 / (2 * r));
    }
    x = x * (sigma(t) / sigma(s)) - d * (alpha(t) * std::expm1(-h));
    previous_x0 = x0;
    previous_h = h;
  }
}

}  // namespace modiff::agents
