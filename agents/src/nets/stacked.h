#pragma once
// K networks of the same shapes (one per run of a group, algos/stacked_steps.h) computed as one: every weight
// of the K runs stacked along a leading dimension, every layer one batched matrix product, so that each kernel
// does the work of K runs. The parameters stay each run's own: the K runs' flat parameters (flat_params.h)
// are moved into the rows of one [K, stride] tensor, and a stacked weight is a strided view of that tensor, so
// the runs' optimizers, EMA, checkpoints and artifacts see every update as if the run had been trained alone.
//
// The networks here are the functions of nets/denoisers.h and nets/networks.h written over [K, B, ...]
// tensors in plain LibTorch operations; autograd's backward pass adds each stacked weight's gradient into the
// runs' gradient rows.
#include <torch/torch.h>

#include <vector>

#include "nets/denoisers.h"
#include "nets/fast_denoisers.h"
#include "nets/networks.h"
#include "ops/flat_params.h"

namespace modiff::agents {

// The flat parameters of one network of K runs, moved into the rows of one tensor.
class StackedParams {
 public:
  struct Run {
    torch::nn::Module* module;
    FlatParams* params;
  };
  // How often a pass uses each weight. Once: the stacked products write their weights' gradients straight into
  // the rows (param()). Repeated (a sampled chain: the same layers at every step): every parameter is a leaf
  // whose gradient autograd accumulates over its uses, copied into the rows by backward().
  enum class WeightUse { Once, Repeated };
  // Moves each run's parameters (and gradients, where it has them) into row k; the networks must have the
  // same parameters in the same order.
  explicit StackedParams(const std::vector<Run>& runs, WeightUse use = WeightUse::Once);
  // Constants over rows the caller made ([K, n]: several networks' flat parameters, each laid out as `layout`,
  // gathered for one pass of the evaluator's stacked inference, infer/shared_passes.cpp); parameters are found
  // by their place in `layout`. No gradients.
  StackedParams(const FlatParams& layout, const torch::Tensor& rows);
  long runs() const { return values_.size(0); }
  // The stacked [K, sizes...] view of a parameter of the first run's network (the others' sit at the same
  // offset of their rows). Where the runs train and gradients are recorded, a leaf of autograd (one per
  // parameter until the next backward) whose gradient backward() copies into the runs' gradient rows;
  // otherwise a constant.
  torch::Tensor operator()(const torch::Tensor& first_run_parameter);
  // The same view for an operation that writes the parameter's gradient itself (the stacked products below):
  // the leaf (so that autograd records the operation) and the gradient rows to write into (undefined where
  // gradients are not recorded).
  struct Param {
    torch::Tensor value, grad;
  };
  Param param(const torch::Tensor& first_run_parameter);
  // The view as a constant: no gradient reaches the parameters (a critic a policy's loss goes through).
  torch::Tensor constant(const torch::Tensor& first_run_parameter) const;
  // Runs the backward pass of `loss` (each stacked product writes its parameters' gradients), then copies the
  // gradients of the leaves operator() handed out since the last call into the runs' gradient rows (zero for
  // a parameter the loss does not reach). Every row is overwritten: no zeroing first.
  void backward(const torch::Tensor& loss);
  // The stacked linear layer y = x W^T + b of a torch.nn.Linear of the first run's network: x [K, B, in].
  torch::Tensor linear(const torch::nn::Linear& first_run_layer, const torch::Tensor& x);
  // All K rows of values: [K, stride] (a row's tail past its parameters is padding that stays zero).
  torch::Tensor& values() { return values_; }

 private:
  struct Leaf {
    long offset;
    torch::Tensor leaf, grads;  // [K, sizes...]: the leaf over the values, its rows of the gradients
    bool written_by_op;         // its gradient written by the operation that uses it (param())
  };
  Leaf& leaf(const torch::Tensor& first_run_parameter, bool written_by_op);
  long offset_of(const torch::Tensor& first_run_parameter) const;  // in the rows; throws if outside the first
  WeightUse use_;
  const float* first_row_ = nullptr;
  torch::Tensor values_, grads_;
  std::vector<Leaf> leaves_;  // of the pass since the last backward
};

// y = x W + b over K runs, x [K, B, in], W [K, in, out], b [K, 1, out] (may be undefined), as one batched
// product. Its backward pass returns dL/dx and writes dL/dW and dL/db into `grad_weight` and `grad_bias`
// (views of the runs' gradient rows, StackedParams::param), each as one batched product (the bias's with a
// ones vector), so that no gradient is reduced or copied apart.
torch::Tensor stacked_matmul(const torch::Tensor& x, const StackedParams::Param& weight,
                             const StackedParams::Param& bias);
// LayerNorm over the last dimension with each run's gain and shift ([K, width]).
torch::Tensor stacked_layer_norm(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                 double eps);

// IDQL's LN-ResNet denoiser over K runs (the function of LnResnetDenoiser::forward). x [K, B, act], t [K, B, 1]
// (the step index as a float), obs [K, B, obs]; `uniforms` [K, blocks, B, hidden]: each block's dropout keeps
// an element where its draw is >= p (the fused blocks' rule, ops/ln_resnet_block.h); undefined: no dropout.
torch::Tensor stacked_ln_resnet(const LnResnetDenoiser& first_run, StackedParams& p, const torch::Tensor& x,
                                const torch::Tensor& t, const torch::Tensor& obs, const torch::Tensor& uniforms,
                                double dropout);
// An Mlp over K runs: x [K, B, in].
torch::Tensor stacked_mlp(const MlpImpl& first_run, StackedParams& p, torch::Tensor x);
// Diffusion-QL's MLP denoiser over K runs (MlpDenoiser::forward): x [K, B, act], t [K, B, 1] (the step index as
// a float), obs [K, B, obs].
torch::Tensor stacked_mlp_denoiser(const MlpDenoiser& first_run, StackedParams& p, const torch::Tensor& x,
                                   const torch::Tensor& t, const torch::Tensor& obs);
// The same denoiser along one reverse chain of `steps` steps (FastDenoiser::chain): the observation's and every
// step's time features' parts of the first layer made once. obs [K, B, obs]; the chain takes x [K, B, act].
DenoiserChain stacked_mlp_chain(const MlpDenoiser& first_run, StackedParams& p, const torch::Tensor& obs, int steps);
// IDQL's LN-ResNet denoiser along one reverse chain of `steps` steps, without dropout (inference): the time
// MLP's output for every step and the observation's part of the input layer made once. obs [K, B, obs]; the
// chain takes x [K, B, act].
DenoiserChain stacked_ln_resnet_chain(const LnResnetDenoiser& first_run, StackedParams& p, const torch::Tensor& obs,
                                      int steps);
// Both heads of a TwinQ over K runs: obs_act [K, B, obs + act] -> {Q1, Q2}, each [K, B, 1]. Without
// `param_grads` the critics are constants: gradients reach obs_act only (GuidanceModule::policy_q).
std::pair<torch::Tensor, torch::Tensor> stacked_twin_q(const TwinQImpl& first_run, StackedParams& p,
                                                       const torch::Tensor& obs_act, bool param_grads = true);

}  // namespace modiff::agents
