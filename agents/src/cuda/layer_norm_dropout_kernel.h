#pragma once
// Launchers of the fused kernels around IDQL's LN-ResNet block input
// (layer_norm_dropout.cu), free of CUDA and torch headers so that C++ code can
// call them. A block computes h + W2 act(W1 LN(dropout(h)) + b1) + b2; the
// matrix products stay with cuBLAS, and these kernels do everything around
// LN(dropout(h)) in one pass each, where LibTorch launches a dropout kernel, a
// LayerNorm kernel and the residual addition forward, and five kernels (the
// LayerNorm's input and parameter gradients, the dropout's mask, two
// additions) on the backward pass's critical path. Built only where a CUDA
// compiler and a CUDA LibTorch are found (MODIFF_CUDA_KERNELS).

namespace modiff::agents::cuda {

// The rows' widths the kernels take: a multiple of 32 from 32 to 1024.
bool layer_norm_dropout_supports(long width);

// Dropout keeps an element where its uniform draw is >= p and scales it by 1 / (1 - p); `uniforms`
// null: no dropout.
struct LayerNormDropoutShape {
  long rows, width;
  const float* uniforms;  // [rows, width] in [0, 1), or null
  float p;
  float eps;
};

// From h [rows, width]: normed = LN(dropout(h)) gamma + beta, residual = h + bias (the block's second
// layer's bias, so that its product accumulates onto it), and each row's mean and 1/std for the
// backward pass. mean and rstd may be null (inference).
bool launch_layer_norm_dropout_forward(const LayerNormDropoutShape& s, const float* h, const float* gamma,
                                       const float* beta, const float* bias, float* normed, float* residual,
                                       float* mean, float* rstd, void* stream);

// grad_h = grad_out + dropout'(LN'(grad_normed)): the block input's gradient through the residual
// path (grad_out) and through the normalization (grad_normed, the first layer's input gradient).
bool launch_layer_norm_dropout_backward(const LayerNormDropoutShape& s, const float* grad_out,
                                        const float* grad_normed, const float* h, const float* gamma,
                                        const float* mean, const float* rstd, float* grad_h, void* stream);

// grad_gamma += sum over rows of grad_normed * xhat, grad_beta += sum of grad_normed (one writer per
// column: the sums are the same from run to run).
// With grad_out (the block output's gradient [rows, width]) also grad_out_bias += its column sums: the
// block's second bias, whose gradient would otherwise be a matrix-vector product of its own.
bool launch_layer_norm_param_grads(const LayerNormDropoutShape& s, const float* grad_normed, const float* h,
                                   const float* mean, const float* rstd, float* grad_gamma, float* grad_beta,
                                   const float* grad_out, float* grad_out_bias, void* stream);

}  // namespace modiff::agents::cuda
