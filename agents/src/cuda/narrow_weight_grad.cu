// dW[:, offset + c] += sum_b g[b, :] x[b, c] for a few columns c. Block: 32 outputs (the lanes) x 8
// columns; its 16 warps take every 16th row of the batch, eight rows' loads in flight at once, and
// their sums meet in shared memory in warp order (the same result every run).
#include <cuda_runtime.h>

#include "narrow_weight_grad_kernel.h"

namespace modiff::agents::cuda {
namespace {

constexpr int kWarps = 16, kColumns = 8, kInFlight = 8;

__global__ void __launch_bounds__(kWarps * 32)
    narrow_weight_grad_kernel(const float* __restrict__ g, int g_stride, const float* __restrict__ x, int x_stride,
                              float* __restrict__ weight_grad, int ld, int offset, int batch, int out, int count) {
  __shared__ float part[kWarps][kColumns][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int i = blockIdx.x * 32 + lane, c0 = blockIdx.y * kColumns;
  float acc[kColumns];
#pragma unroll
  for (int c = 0; c < kColumns; ++c) acc[c] = 0;
  for (int b0 = warp; b0 < batch; b0 += kWarps * kInFlight) {
    float gv[kInFlight], xv[kInFlight][kColumns];
#pragma unroll
    for (int k = 0; k < kInFlight; ++k) {
      const int b = b0 + k * kWarps;
      gv[k] = b < batch && i < out ? g[b * g_stride + i] : 0.0f;
#pragma unroll
      for (int c = 0; c < kColumns; ++c) xv[k][c] = b < batch && c0 + c < count ? x[b * x_stride + c0 + c] : 0.0f;
    }
#pragma unroll
    for (int k = 0; k < kInFlight; ++k)
#pragma unroll
      for (int c = 0; c < kColumns; ++c) acc[c] += gv[k] * xv[k][c];
  }
#pragma unroll
  for (int c = 0; c < kColumns; ++c) part[warp][c][lane] = acc[c];
  __syncthreads();
  if (threadIdx.x < kColumns * 32) {
    const int c = threadIdx.x / 32, l = threadIdx.x % 32, output = blockIdx.x * 32 + l;
    if (output < out && c0 + c < count) {
      float sum = 0;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += part[w][c][l];
      weight_grad[output * ld + offset + c0 + c] += sum;
    }
  }
}

}  // namespace

bool launch_narrow_weight_grad(const float* g, long g_stride, const float* x, long x_stride, float* weight_grad,
                               long ld, long offset, long batch, long out, long count, void* stream) {
  if (batch < 1 || out < 1 || count < 1 || count > kNarrowMaxColumns || offset < 0 || offset + count > ld ||
      batch * g_stride > (1L << 30) || batch * x_stride > (1L << 30) || out * ld > (1L << 30))
    return false;
  const dim3 grid(static_cast<unsigned>((out + 31) / 32), static_cast<unsigned>((count + kColumns - 1) / kColumns));
  narrow_weight_grad_kernel<<<grid, kWarps * 32, 0, static_cast<cudaStream_t>(stream)>>>(
      g, static_cast<int>(g_stride), x, static_cast<int>(x_stride), weight_grad, static_cast<int>(ld),
      static_cast<int>(offset), static_cast<int>(batch), static_cast<int>(out), static_cast<int>(count));
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace modiff::agents::cuda
