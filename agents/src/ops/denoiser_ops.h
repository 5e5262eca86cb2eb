#pragma once
// Two pieces of a fast denoiser's training step as autograd functions: with modiff's own kernels
// (Kernels, chosen when the model is built) each direction is one kernel (cuda/denoiser_kernels.cu);
// otherwise LibTorch's composite computes the same.
#include <torch/torch.h>

#include "runtime/implementation.h"

namespace modiff::agents {

// The noise-prediction loss: squared error summed over the action dimensions, then the batch mean
// (`per_row_sum`, IDQL's), or the mean over every element (Diffusion-QL's). target gets no gradient.
torch::Tensor squared_error_loss(const torch::Tensor& pred, const torch::Tensor& target, bool per_row_sum, Kernels kernels);

// IDQL's learnable Fourier features [cos(2 pi t W^T), sin(2 pi t W^T)] of t [R, 1] with W [half, 1];
// W's gradient is added into its .grad storage where it has one (the flat gradient buffer).
torch::Tensor fourier_features(const torch::Tensor& t, const torch::Tensor& w, Kernels kernels);

}  // namespace modiff::agents
