#pragma once
// Linear layers whose backward pass adds the weight and bias gradients into
// the parameters' existing .grad storage (the flat gradient buffer,
// flat_params.h) with accumulating matrix products, instead of returning new
// gradient tensors that autograd then adds in a separate kernel each. The bias
// gradient is a matrix-vector product with a ones vector, which on the GPU is
// several times faster than the column reduction autograd would launch. In a
// captured training step this removes about a third of the kernels
// (docs/benchmarks.md). Where a parameter has no .grad storage, its gradient
// is returned to autograd as usual; with `param_grads` false, the parameters
// act as constants (gradients still flow to x).
#include <torch/torch.h>

namespace modiff::agents {

// y = x W^T + b: torch.nn.Linear's function (x [B, in], W [out, in], b [out]).
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     bool param_grads = true);

// x [B, count] times the input columns offset .. offset + count of weight [out, in] (plus bias [out]
// when defined): one part of a layer over concatenated inputs, so that parts that stay fixed along a
// diffusion chain are multiplied once per chain, not once per step.
torch::Tensor linear_columns(const torch::Tensor& x, const torch::Tensor& weight, long offset,
                             const torch::Tensor& bias = {});

// addend + the same product, summed by the product itself (no addition kernel); addend's gradient is g's.
torch::Tensor linear_columns_onto(const torch::Tensor& addend, const torch::Tensor& x, const torch::Tensor& weight,
                                  long offset);

// Stacked heads: y = x W + b with x [S, B, in] (may be an expanded view), W [S, in, out], b [S, 1, out].
torch::Tensor stacked_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                             bool param_grads = true);

// A ones vector of length n on `like`'s device and dtype, made once per length: bias gradients are
// matrix-vector products with it (a fill per use would cost a kernel each).
torch::Tensor ones_like_rows(long n, const torch::Tensor& like);

}  // namespace modiff::agents
