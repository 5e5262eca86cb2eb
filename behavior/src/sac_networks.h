#pragma once
// SAC's networks (CleanRL layout): a tanh-squashed Gaussian actor and a Q
// network, each with two hidden layers of `hidden` ReLU units.
#include <torch/torch.h>

#include <cmath>

namespace modiff::behavior {

constexpr double kLogStdMin = -5.0;
constexpr double kLogStdMax = 2.0;

struct ActorImpl : torch::nn::Module {
  ActorImpl(int obs_dim, int act_dim, int hidden)
      : fc1(register_module("fc1", torch::nn::Linear(obs_dim, hidden))),
        fc2(register_module("fc2", torch::nn::Linear(hidden, hidden))),
        fc_mean(register_module("fc_mean", torch::nn::Linear(hidden, act_dim))),
        fc_logstd(register_module("fc_logstd", torch::nn::Linear(hidden, act_dim))) {}

  // Mean and log std of the pre-squash Gaussian.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& obs) {
    auto x = torch::relu(fc1->forward(obs));
    x = torch::relu(fc2->forward(x));
    auto log_std = torch::tanh(fc_logstd->forward(x));
    log_std = kLogStdMin + 0.5 * (kLogStdMax - kLogStdMin) * (log_std + 1);
    return {fc_mean->forward(x), log_std};
  }

  // A reparameterized sample in [-1, 1] and its log-probability (summed over dims).
  std::pair<torch::Tensor, torch::Tensor> sample(const torch::Tensor& obs,
                                                 c10::optional<at::Generator> gen = c10::nullopt) {
    auto [mean, log_std] = forward(obs);
    auto std = log_std.exp();
    auto noise = torch::randn(mean.sizes(), gen, mean.options());
    auto x = mean + std * noise;
    auto y = torch::tanh(x);
    auto log_prob = -0.5 * noise.pow(2) - log_std - 0.5 * std::log(2 * M_PI);
    log_prob = log_prob - torch::log(1 - y.pow(2) + 1e-6);
    return {y, log_prob.sum(1, true)};
  }

  torch::nn::Linear fc1, fc2, fc_mean, fc_logstd;
};
TORCH_MODULE(Actor);

struct SoftQImpl : torch::nn::Module {
  SoftQImpl(int obs_dim, int act_dim, int hidden)
      : fc1(register_module("fc1", torch::nn::Linear(obs_dim + act_dim, hidden))),
        fc2(register_module("fc2", torch::nn::Linear(hidden, hidden))),
        fc3(register_module("fc3", torch::nn::Linear(hidden, 1))) {}

  torch::Tensor forward(const torch::Tensor& obs, const torch::Tensor& act) {
    auto x = torch::relu(fc1->forward(torch::cat({obs, act}, 1)));
    x = torch::relu(fc2->forward(x));
    return fc3->forward(x);
  }

  torch::nn::Linear fc1, fc2, fc3;
};
TORCH_MODULE(SoftQ);

// Copies (tau = 1) or blends parameters of `from` into `to`.
inline void polyak_update(torch::nn::Module& to, const torch::nn::Module& from, double tau) {
  torch::NoGradGuard no_grad;
  auto dst = to.parameters();
  auto src = from.parameters();
  // One fused call per list instead of two ops per tensor.
  torch::_foreach_mul_(dst, 1 - tau);
  torch::_foreach_add_(dst, src, tau);
}

}  // namespace modiff::behavior
