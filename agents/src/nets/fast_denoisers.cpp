#include "nets/fast_denoisers.h"

#include "modiff/common/error.h"
#include "nets/denoisers.h"
#include "ops/linear_accumulate.h"
#include "ops/ln_resnet_block.h"
#include "ops/time_path.h"

namespace modiff::agents {
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

// IDQL's LN-ResNet in parts. Input columns [x | obs | time | cond].
struct FastLnResnetDenoiser : LnResnetDenoiser, FastDenoiser {
  FastLnResnetDenoiser(const DenoiserConfig& c, int obs_dim, int act_dim, Kernels k)
      : LnResnetDenoiser(c, obs_dim, act_dim, Implementation::Fast, k),
        kernels_(k),
        fused_blocks_(k.own && c.blocks > 0 && fused_ln_resnet_block_supports(c.hidden)) {}

  FastDenoiser* fast() override { return this; }
  Kernels kernels() const override { return kernels_; }
  bool only_accumulating_layers() const override { return false; }

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

  DenoiserChain chain(const torch::Tensor& obs, const torch::Tensor& cond, int steps) override {
    return split_first_layer(input->weight, input->bias, time_path_rows(steps, time_path(), obs.options(), kernels_),
                             time_column(), obs, obs_column(), cond, cond_column(),
                             [this](torch::Tensor h) { return blocks(h); });
  }

  torch::Tensor first_layer_data(const torch::Tensor& x, const torch::Tensor& obs, const torch::Tensor& cond) override {
    auto h = data_columns(input->weight, x, obs, obs_column(), cond, cond_column());
    // The blocks' dropout draws for the coming forward_from_first_layer, made here, beside the time
    // features' path, rather than on the critical path between the first layer and the first block.
    if (fused_blocks_ && dropout_active()) next_uniforms = dropout_uniforms(h);
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

  // Everything after the input layer: modiff's fused blocks where the model chose them, LibTorch's
  // modules otherwise. `uniforms`: the dropout draws, when made already.
  torch::Tensor blocks(torch::Tensor h, torch::Tensor uniforms = {}) {
    if (fused_blocks_) {
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

  const Kernels kernels_;
  const bool fused_blocks_;     // modiff's fused LN-ResNet blocks (CUDA, a width they take)
  torch::Tensor next_uniforms;  // dropout draws made by first_layer_data for the next blocks()
};

// Diffusion-QL's MLP in parts. Input columns [x | time | obs | cond].
struct FastMlpDenoiser : MlpDenoiser, FastDenoiser {
  FastMlpDenoiser(const DenoiserConfig& c, int obs_dim, int act_dim, Kernels k)
      : MlpDenoiser(c, obs_dim, act_dim, Implementation::Fast), kernels_(k) {}

  FastDenoiser* fast() override { return this; }
  Kernels kernels() const override { return kernels_; }
  bool only_accumulating_layers() const override { return true; }

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

  DenoiserChain chain(const torch::Tensor& obs, const torch::Tensor& cond, int steps) override {
    return split_first_layer(first()->weight, first()->bias, time_path_rows(steps, time_path(), obs.options(), kernels_),
                             action_dim, obs, obs_column(), cond, cond_column(),
                             [this](torch::Tensor h) { return body->forward_rest(h); });
  }

  torch::Tensor first_layer_data(const torch::Tensor& x, const torch::Tensor& obs, const torch::Tensor& cond) override {
    return data_columns(first()->weight, x, obs, obs_column(), cond, cond_column());
  }
  torch::Tensor forward_from_first_layer(const torch::Tensor& h) override { return body->forward_rest(h); }

  const Kernels kernels_;
};

}  // namespace

std::shared_ptr<Denoiser> make_fast_ln_resnet(const DenoiserConfig& config, int obs_dim, int act_dim, Kernels kernels) {
  return std::make_shared<FastLnResnetDenoiser>(config, obs_dim, act_dim, kernels);
}

std::shared_ptr<Denoiser> make_fast_mlp(const DenoiserConfig& config, int obs_dim, int act_dim, Kernels kernels) {
  return std::make_shared<FastMlpDenoiser>(config, obs_dim, act_dim, kernels);
}

}  // namespace modiff::agents
