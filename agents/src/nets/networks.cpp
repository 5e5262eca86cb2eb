#include "nets/networks.h"

#include "ops/denoiser_ops.h"

#include "ops/ln_resnet_block.h"
#include "ops/time_path.h"

#include <cmath>

#include "ops/linear_accumulate.h"
#include "modiff/common/error.h"

namespace modiff::agents {


MlpImpl::MlpImpl(int in, const std::vector<int>& hidden, int out, Activation act, bool layer_norm_input)
    : activation(act) {
  if (layer_norm_input) input_norm = register_module("input_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({in})));
  int width = in;
  std::vector<int> sizes = hidden;
  sizes.push_back(out);
  for (size_t i = 0; i < sizes.size(); ++i) {
    layers.push_back(register_module("fc" + std::to_string(i), torch::nn::Linear(width, sizes[i])));
    width = sizes[i];
  }
}

torch::Tensor MlpImpl::forward(torch::Tensor x) {
  if (input_norm) x = input_norm->forward(x);
  return forward_rest(linear(x, layers[0]->weight, layers[0]->bias));
}

torch::Tensor MlpImpl::forward_rest(torch::Tensor x) {
  for (size_t i = 1; i < layers.size(); ++i) x = linear(activate(activation, x), layers[i]->weight, layers[i]->bias);
  return x;
}

DenoiserChain Denoiser::chain(const torch::Tensor& obs, const torch::Tensor& cond, int) {
  return [this, obs, cond](const torch::Tensor& x, int step) {
    return forward(x, torch::full({x.size(0), 1}, static_cast<double>(step), x.options()), obs, cond);
  };
}

TwinQImpl::TwinQImpl(int obs_dim, int act_dim, int hidden, int layers, Activation act) : activation(act) {
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
    x = stacked_linear(x, weights[i], biases[i], param_grads);
    if (i + 1 < weights.size()) x = activate(activation, x);
  }
  return x;
}


FourierFeaturesImpl::FourierFeaturesImpl(int out_dim) {
  kernel = register_parameter("kernel", torch::randn({out_dim / 2, 1}) * 0.2);
}

torch::Tensor FourierFeaturesImpl::forward(const torch::Tensor& t) { return fourier_features(t, kernel); }

namespace {

// A chain over a first layer whose input is [x | time | obs | cond] in some column order: the products of
// the observation's and condition's columns (with the bias) and of every step's time features are made
// once; each step adds them to the product of x's columns (at column 0) and runs `rest` on the sum.
DenoiserChain split_first_layer(const torch::Tensor& weight, const torch::Tensor& bias, const torch::Tensor& time_rows,
                                long time_column, const torch::Tensor& obs, long obs_column, const torch::Tensor& cond,
                                long cond_column, std::function<torch::Tensor(torch::Tensor)> rest) {
  auto per_step = linear_columns(time_rows, weight, time_column);
  auto fixed = linear_columns(obs, weight, obs_column, bias);
  if (cond.defined()) fixed = fixed + linear_columns(cond, weight, cond_column);
  return [weight, fixed, per_step, rest = std::move(rest)](const torch::Tensor& x, int step) {
    return rest(linear_columns(x, weight, 0) + (fixed + per_step.narrow(0, step, 1)));
  };
}

// The first layer's product of the data columns, no bias: the observation's (and condition's) first,
// since they are ready before x is noised.
torch::Tensor data_columns(const torch::Tensor& weight, const torch::Tensor& x, const torch::Tensor& obs,
                           long obs_column, const torch::Tensor& cond, long cond_column) {
  auto h = linear_columns(obs, weight, obs_column);
  if (cond.defined()) h = linear_columns_onto(h, cond, weight, cond_column);
  return linear_columns_onto(h, x, weight, 0);
}

// IDQL's actor: time features -> MLP; Dense(hidden) over [x, s, time (, cond)];
// residual blocks [Dropout, LayerNorm, Dense(width), act, Dense(hidden)] + skip; act; Dense(act_dim).
struct LnResnetDenoiser : Denoiser {
  LnResnetDenoiser(const DenoiserConfig& c, int obs_dim, int act_dim)
      : activation(c.activation), time_width(c.time_dim * 2), action_dim(act_dim), obs_width(obs_dim) {
    time_features = register_module("time_features", FourierFeatures(c.time_dim));
    time_mlp = register_module("time_mlp", Mlp(c.time_dim, std::vector<int>{c.time_dim * 2}, c.time_dim * 2, c.activation));
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

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& obs,
                        const torch::Tensor& cond) override {
    auto time = time_mlp->forward(time_features->forward(t));
    auto h = cond.defined() ? torch::cat({x, obs, time, cond}, 1) : torch::cat({x, obs, time}, 1);
    return blocks(linear(h, input->weight, input->bias));
  }

  // Input columns [x | obs | time | cond].
  long obs_column() const { return action_dim; }
  long time_column() const { return action_dim + obs_width; }
  long cond_column() const { return action_dim + obs_width + time_width; }
  TimePathParams time_path() const override {
    return {time_features->kernel,          {},
            time_mlp->layers[0]->weight,    time_mlp->layers[0]->bias,
            time_mlp->layers[1]->weight,    time_mlp->layers[1]->bias,
            time_mlp->activation,           input->weight,
            input->bias,                    time_column()};
  }
  torch::Tensor time_rows(int steps, const torch::TensorOptions& options) {
    return time_path_rows(steps, time_path(), options);
  }

  DenoiserChain chain(const torch::Tensor& obs, const torch::Tensor& cond, int steps) override {
    return split_first_layer(input->weight, input->bias, time_rows(steps, obs.options()), time_column(), obs,
                             obs_column(), cond, cond_column(), [this](torch::Tensor h) { return blocks(h); });
  }

  torch::Tensor first_layer_data(const torch::Tensor& x, const torch::Tensor& obs, const torch::Tensor& cond) override {
    auto h = data_columns(input->weight, x, obs, obs_column(), cond, cond_column());
    // The blocks' dropout draws for the coming forward_from_first_layer, made here, beside the time
    // features' path, rather than on the critical path between the first layer and the first block.
    if (dropout_active() && fused_ln_resnet_block_takes(h, block_params(0))) next_uniforms = dropout_uniforms(h);
    return h;
  }
  torch::Tensor forward_from_first_layer(const torch::Tensor& first) override {
    auto uniforms = std::move(next_uniforms);
    next_uniforms = torch::Tensor();
    return blocks(first, uniforms);
  }

  LnResnetBlockParams block_params(size_t b) const {
    return {norms[b]->weight,  norms[b]->bias,     expand[b]->weight, expand[b]->bias,
            contract[b]->weight, contract[b]->bias, norms[b]->options.eps(), activation};
  }

  bool dropout_active() const { return is_training() && !dropouts.empty() && dropouts.front()->options.p() > 0; }
  // One draw for every block's dropout (the fused blocks keep an element where its draw is >= p).
  torch::Tensor dropout_uniforms(const torch::Tensor& h) const {
    return torch::rand({static_cast<long>(norms.size()), h.size(0), h.size(1)}, h.options());
  }

  // Everything after the input layer: modiff's fused blocks where they take the input (CUDA), LibTorch's
  // modules otherwise. `uniforms`: the dropout draws, when made already.
  torch::Tensor blocks(torch::Tensor h, torch::Tensor uniforms = {}) {
    if (!norms.empty() && fused_ln_resnet_block_takes(h, block_params(0))) {
      const bool drop = dropout_active();
      if (drop && (!uniforms.defined() || uniforms.size(1) != h.size(0))) uniforms = dropout_uniforms(h);
      const double p = dropouts.front()->options.p();
      for (size_t b = 0; b < norms.size(); ++b)
        h = fused_ln_resnet_block(h, block_params(b), drop ? uniforms[b] : torch::Tensor(), p);
      return linear(activate(activation, h), output->weight, output->bias);
    }
    for (size_t b = 0; b < norms.size(); ++b) {
      auto r = norms[b]->forward(dropouts[b]->forward(h));
      r = linear(activate(activation, linear(r, expand[b]->weight, expand[b]->bias)), contract[b]->weight,
                 contract[b]->bias);
      h = h + r;
    }
    return linear(activate(activation, h), output->weight, output->bias);
  }

  Activation activation;
  long time_width;  // of the time MLP's output
  long action_dim, obs_width;
  torch::Tensor next_uniforms;  // dropout draws made by first_layer_data for the next blocks()
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
  MlpDenoiser(const DenoiserConfig& c, int obs_dim, int act_dim) : action_dim(act_dim), obs_width(obs_dim) {
    frequencies = register_buffer("frequencies", sinusoidal_frequencies(c.time_dim));
    time_mlp = register_module("time_mlp", Mlp(c.time_dim, std::vector<int>{c.time_dim * 2}, c.time_dim, c.activation));
    body = register_module("body", Mlp(act_dim + c.time_dim + obs_dim + c.cond_dim, std::vector<int>(c.blocks, c.hidden),
                                       act_dim, c.activation));
  }

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& obs,
                        const torch::Tensor& cond) override {
    auto time = time_mlp->forward(sinusoidal_embedding(t, frequencies));
    auto h = cond.defined() ? torch::cat({x, time, obs, cond}, 1) : torch::cat({x, time, obs}, 1);
    return body->forward(h);
  }

  // Input columns [x | time | obs | cond].
  long time_dim() const { return frequencies.size(0) * 2; }
  long obs_column() const { return action_dim + time_dim(); }
  long cond_column() const { return action_dim + time_dim() + obs_width; }
  const torch::nn::Linear& first() const { return body->layers.front(); }
  TimePathParams time_path() const override {
    return {{},
            frequencies,
            time_mlp->layers[0]->weight,
            time_mlp->layers[0]->bias,
            time_mlp->layers[1]->weight,
            time_mlp->layers[1]->bias,
            time_mlp->activation,
            first()->weight,
            first()->bias,
            action_dim};
  }
  torch::Tensor time_rows(int steps, const torch::TensorOptions& options) {
    return time_path_rows(steps, time_path(), options);
  }

  DenoiserChain chain(const torch::Tensor& obs, const torch::Tensor& cond, int steps) override {
    return split_first_layer(first()->weight, first()->bias, time_rows(steps, obs.options()), action_dim, obs,
                             obs_column(), cond, cond_column(), [this](torch::Tensor h) { return body->forward_rest(h); });
  }

  torch::Tensor first_layer_data(const torch::Tensor& x, const torch::Tensor& obs, const torch::Tensor& cond) override {
    return data_columns(first()->weight, x, obs, obs_column(), cond, cond_column());
  }
  torch::Tensor forward_from_first_layer(const torch::Tensor& h) override { return body->forward_rest(h); }

  bool only_accumulating_layers() const override { return true; }

  torch::Tensor frequencies;  // constant: computed once, not per call
  Mlp time_mlp{nullptr}, body{nullptr};
  long action_dim, obs_width;
};

}  // namespace

std::shared_ptr<Denoiser> make_denoiser(const DenoiserConfig& config, int obs_dim, int act_dim) {
  if (config.kind == "ln-resnet") return std::make_shared<LnResnetDenoiser>(config, obs_dim, act_dim);
  if (config.kind == "mlp") return std::make_shared<MlpDenoiser>(config, obs_dim, act_dim);
  throw Error("unknown denoiser '" + config.kind + "' (ln-resnet, mlp)");
}

}  // namespace modiff::agents
