#include "nets/denoisers.h"

#include "modiff/common/error.h"
#include "nets/fast_denoisers.h"

namespace modiff::agents {

LnResnetDenoiser::LnResnetDenoiser(const DenoiserConfig& c, int obs_dim, int act_dim, Implementation implementation,
                                   Kernels kernels)
    : activation(c.activation), time_width(c.time_dim * 2), action_dim(act_dim), obs_width(obs_dim) {
  time_features = register_module("time_features", FourierFeatures(c.time_dim, kernels));
  time_mlp = register_module(
      "time_mlp", Mlp(c.time_dim, std::vector<int>{c.time_dim * 2}, c.time_dim * 2, c.activation, false, implementation));
  input = register_module("input", torch::nn::Linear(act_dim + obs_dim + c.time_dim * 2 + c.cond_dim, c.hidden));
  for (int b = 0; b < c.blocks; ++b) {
    const std::string p = "block" + std::to_string(b);
    dropouts.push_back(register_module(p + "_dropout", torch::nn::Dropout(c.dropout)));
    norms.push_back(register_module(p + "_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden}))));
    expand.push_back(register_module(p + "_expand", torch::nn::Linear(c.hidden, c.block_width)));
    contract.push_back(register_module(p + "_contract", torch::nn::Linear(c.block_width, c.hidden)));
  }
  output = register_module("output", torch::nn::Linear(c.hidden, act_dim));
}

torch::Tensor LnResnetDenoiser::forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& obs,
                                        const torch::Tensor& cond) {
  auto time = time_mlp->forward(time_features->forward(t));
  auto h = input->forward(cond.defined() ? torch::cat({x, obs, time, cond}, 1) : torch::cat({x, obs, time}, 1));
  for (size_t b = 0; b < norms.size(); ++b) {
    auto r = norms[b]->forward(dropouts[b]->forward(h));
    h = h + contract[b]->forward(activate(activation, expand[b]->forward(r)));
  }
  return output->forward(activate(activation, h));
}

MlpDenoiser::MlpDenoiser(const DenoiserConfig& c, int obs_dim, int act_dim, Implementation implementation)
    : action_dim(act_dim), obs_width(obs_dim) {
  frequencies = register_buffer("frequencies", sinusoidal_frequencies(c.time_dim));
  time_mlp = register_module(
      "time_mlp", Mlp(c.time_dim, std::vector<int>{c.time_dim * 2}, c.time_dim, c.activation, false, implementation));
  body = register_module("body", Mlp(act_dim + c.time_dim + obs_dim + c.cond_dim, std::vector<int>(c.blocks, c.hidden),
                                     act_dim, c.activation, false, implementation));
}

torch::Tensor MlpDenoiser::forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& obs,
                                   const torch::Tensor& cond) {
  auto time = time_mlp->forward(sinusoidal_embedding(t, frequencies));
  return body->forward(cond.defined() ? torch::cat({x, time, obs, cond}, 1) : torch::cat({x, time, obs}, 1));
}

std::shared_ptr<Denoiser> make_denoiser(const DenoiserConfig& config, int obs_dim, int act_dim,
                                        Implementation implementation, torch::Device device) {
  std::shared_ptr<Denoiser> net;
  const bool reference = implementation == Implementation::Reference;
  if (config.kind == "ln-resnet") {
    net = reference ? std::make_shared<LnResnetDenoiser>(config, obs_dim, act_dim, implementation, Kernels{})
                    : make_fast_ln_resnet(config, obs_dim, act_dim, Kernels::for_device(device));
  } else if (config.kind == "mlp") {
    net = reference ? std::make_shared<MlpDenoiser>(config, obs_dim, act_dim, implementation)
                    : make_fast_mlp(config, obs_dim, act_dim, Kernels::for_device(device));
  } else {
    throw Error("unknown denoiser '" + config.kind + "' (ln-resnet, mlp)");
  }
  net->to(device);
  return net;
}

}  // namespace modiff::agents
