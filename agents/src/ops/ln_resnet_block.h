#pragma once
// IDQL's LN-ResNet block, h + W2 act(W1 LN(dropout(h)) + b1) + b2, as one
// autograd function over modiff's fused kernels (cuda/layer_norm_dropout.cu):
// forward, LN(dropout(h)) and the residual plus b2 in one kernel, then the two
// products (the second accumulating onto the residual) and the activation;
// backward, the two products, the activation's derivative, and one kernel for
// the normalization's, dropout's and residual's gradients, with every
// parameter gradient added into its .grad storage beside the backward pass
// (cuda_support.h). That is 4 kernels on each pass's critical path where
// LibTorch's modules launch 6 forward and 11 backward (docs/benchmarks.md).
#include <torch/torch.h>

#include "ops/layers.h"

namespace modiff::agents {

struct LnResnetBlockParams {
  torch::Tensor norm_weight, norm_bias;          // LayerNorm's gamma, beta [width]
  torch::Tensor expand_weight, expand_bias;      // [inner, width], [inner]
  torch::Tensor contract_weight, contract_bias;  // [width, inner], [width]
  double norm_eps = 1e-5;
  Activation activation = Activation::Silu;
};

// True where this build's fused block takes rows of `width` (a build with modiff's CUDA kernels and a width
// they take): a fast LN-ResNet asks once, when it is built.
bool fused_ln_resnet_block_supports(long width);

// The block, on CUDA float32 tensors; where gradients are recorded every parameter needs .grad storage
// (flat_params.h) to add its gradient into. Dropout keeps an element where its draw in `uniforms` ([rows, width], uniform in [0, 1))
// is >= p and scales it by 1 / (1 - p); undefined uniforms: no dropout.
torch::Tensor fused_ln_resnet_block(const torch::Tensor& h, const LnResnetBlockParams& p,
                                    const torch::Tensor& uniforms, double dropout);

// The same function from LibTorch's operations (the reference the CUDA test compares against).
torch::Tensor ln_resnet_block_reference(const torch::Tensor& h, const LnResnetBlockParams& p,
                                        const torch::Tensor& uniforms, double dropout);

}  // namespace modiff::agents
