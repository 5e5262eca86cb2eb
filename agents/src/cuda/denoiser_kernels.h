#pragma once
// Launchers of two small kernels of the denoisers' training step
// (denoiser_kernels.cu), free of CUDA and torch headers so that C++ code can
// call them: the noise-prediction loss with its gradient, and IDQL's learnable
// Fourier time features forward and backward. LibTorch's composites take 3 + 4
// kernels for the first and 5 + 10 for the second (docs/benchmarks.md), all on
// the training step's critical path. Built only where a CUDA compiler and a
// CUDA LibTorch are found (MODIFF_CUDA_KERNELS).

namespace modiff::agents::cuda {

// loss[0] = scale sum((pred - target)^2) over n elements, and grad = 2 scale (pred - target).
bool launch_squared_error(const float* pred, const float* target, float* grad, float* loss, long n, float scale,
                          void* stream);

// out [rows, 2 half] = [cos(2 pi t W), sin(2 pi t W)] for t [rows] and W [half].
bool launch_fourier_features_forward(const float* t, const float* w, float* out, long rows, long half, void* stream);

// grad_w [half] (+)= d out / d W applied to grad_out [rows, 2 half]; accumulate: add to grad_w, else write it.
bool launch_fourier_features_backward(const float* t, const float* w, const float* grad_out, float* grad_w,
                                      long rows, long half, bool accumulate, void* stream);

}  // namespace modiff::agents::cuda
