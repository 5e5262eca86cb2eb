// The noise-prediction loss with its gradient in one pass (one thread block: a batch's predictions
// are a few thousand numbers), and IDQL's Fourier time features, whose backward pass LibTorch's
// composite spreads over ten elementwise kernels. Math as the CPU composite (networks.cpp,
// diffusion.cpp): the features' argument is (t W) 2 pi in float, as matmul then scaling computes it.
#include <cuda_runtime.h>

#include "block_sum.cuh"
#include "denoiser_kernels.h"

namespace modiff::agents::cuda {
namespace {

constexpr int kThreads = 512;
constexpr float kTwoPi = 6.28318530717958647692f;

__global__ void __launch_bounds__(kThreads) squared_error_kernel(const float* __restrict__ pred,
                                                                 const float* __restrict__ target,
                                                                 float* __restrict__ grad, float* __restrict__ loss,
                                                                 long n, float scale) {
  __shared__ float shared[kThreads / 32];
  float sum = 0;
  for (long i = threadIdx.x; i < n; i += kThreads) {
    const float d = pred[i] - target[i];
    sum += d * d;
    grad[i] = 2.0f * scale * d;
  }
  sum = block_sum<kThreads>(sum, shared);
  if (threadIdx.x == 0) loss[0] = sum * scale;
}

__global__ void fourier_forward_kernel(const float* __restrict__ t, const float* __restrict__ w,
                                       float* __restrict__ out, long rows, long half) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= rows * half) return;
  const long r = i / half, k = i % half;
  const float f = (t[r] * w[k]) * kTwoPi;
  out[r * 2 * half + k] = cosf(f);
  out[r * 2 * half + half + k] = sinf(f);
}

// One thread per frequency: d/dW_k = sum_r 2 pi t_r (-sin f g_cos + cos f g_sin).
__global__ void fourier_backward_kernel(const float* __restrict__ t, const float* __restrict__ w,
                                        const float* __restrict__ grad_out, float* __restrict__ grad_w, long rows,
                                        long half, bool accumulate) {
  const long k = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (k >= half) return;
  float sum = 0;
  for (long r = 0; r < rows; ++r) {
    const float f = (t[r] * w[k]) * kTwoPi;
    const float g_cos = grad_out[r * 2 * half + k], g_sin = grad_out[r * 2 * half + half + k];
    sum += kTwoPi * t[r] * (cosf(f) * g_sin - sinf(f) * g_cos);
  }
  grad_w[k] = accumulate ? grad_w[k] + sum : sum;
}

}  // namespace

bool launch_squared_error(const float* pred, const float* target, float* grad, float* loss, long n, float scale,
                          void* stream) {
  if (n < 1) return false;
  squared_error_kernel<<<1, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(pred, target, grad, loss, n, scale);
  return cudaGetLastError() == cudaSuccess;
}

bool launch_fourier_features_forward(const float* t, const float* w, float* out, long rows, long half, void* stream) {
  if (rows < 1 || half < 1) return false;
  const long n = rows * half;
  fourier_forward_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(
      t, w, out, rows, half);
  return cudaGetLastError() == cudaSuccess;
}

bool launch_fourier_features_backward(const float* t, const float* w, const float* grad_out, float* grad_w,
                                      long rows, long half, bool accumulate, void* stream) {
  if (rows < 1 || half < 1) return false;
  fourier_backward_kernel<<<static_cast<unsigned>((half + 127) / 128), 128, 0, static_cast<cudaStream_t>(stream)>>>(
      t, w, grad_out, grad_w, rows, half, accumulate);
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace modiff::agents::cuda
