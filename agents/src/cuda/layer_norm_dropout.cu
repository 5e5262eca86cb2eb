// The LN-ResNet block input, LN(dropout(h)), forward and backward in one pass
// each (layer_norm_dropout_kernel.h says why). One warp per row: the row's
// values stay in registers (width / 32 per lane, the lanes reading consecutive
// columns), and the row's statistics are warp reductions. The formulas are
// LayerNorm's, with x = dropout(h) = h keep / (1 - p):
//   xhat = (x - mean) rstd, rstd = 1 / sqrt(var(x) + eps), y = xhat gamma + beta;
//   dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy gamma;
//   dh = dx keep / (1 - p) (+ the residual path's gradient).
#include <cuda_runtime.h>

#include <type_traits>

#include "layer_norm_dropout_kernel.h"

namespace modiff::agents::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 4;  // warps per block

__device__ inline float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// dropout(h) for one element: the scaled value where kept, 0 where dropped.
__device__ inline float dropped(float h, long index, const LayerNormDropoutShape& s, float scale) {
  if (s.uniforms == nullptr) return h;
  return s.uniforms[index] >= s.p ? h * scale : 0.0f;
}

template <int kPerLane>
__global__ void forward_kernel(LayerNormDropoutShape s, const float* __restrict__ h, const float* __restrict__ gamma,
                               const float* __restrict__ beta, const float* __restrict__ bias,
                               float* __restrict__ normed, float* __restrict__ residual, float* __restrict__ mean_out,
                               float* __restrict__ rstd_out) {
  const long row = static_cast<long>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= s.rows) return;
  const float scale = s.uniforms == nullptr ? 1.0f : 1.0f / (1.0f - s.p);
  const long base = row * s.width;
  float x[kPerLane];
  float sum = 0;
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const int col = lane + k * kWarp;
    const float value = h[base + col];
    residual[base + col] = value + bias[col];
    x[k] = dropped(value, base + col, s, scale);
    sum += x[k];
  }
  const float mean = warp_sum(sum) / s.width;
  float squares = 0;
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) squares += (x[k] - mean) * (x[k] - mean);
  const float rstd = rsqrtf(warp_sum(squares) / s.width + s.eps);
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const int col = lane + k * kWarp;
    normed[base + col] = (x[k] - mean) * rstd * gamma[col] + beta[col];
  }
  if (lane == 0 && mean_out != nullptr) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

template <int kPerLane>
__global__ void backward_kernel(LayerNormDropoutShape s, const float* __restrict__ grad_out,
                                const float* __restrict__ grad_normed, const float* __restrict__ h,
                                const float* __restrict__ gamma, const float* __restrict__ mean_in,
                                const float* __restrict__ rstd_in, float* __restrict__ grad_h) {
  const long row = static_cast<long>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= s.rows) return;
  const float scale = s.uniforms == nullptr ? 1.0f : 1.0f / (1.0f - s.p);
  const long base = row * s.width;
  const float mean = mean_in[row], rstd = rstd_in[row];
  float xhat[kPerLane], dxhat[kPerLane];
  float sum_dxhat = 0, sum_dxhat_xhat = 0;
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const int col = lane + k * kWarp;
    xhat[k] = (dropped(h[base + col], base + col, s, scale) - mean) * rstd;
    dxhat[k] = grad_normed[base + col] * gamma[col];
    sum_dxhat += dxhat[k];
    sum_dxhat_xhat += dxhat[k] * xhat[k];
  }
  const float mean_dxhat = warp_sum(sum_dxhat) / s.width;
  const float mean_dxhat_xhat = warp_sum(sum_dxhat_xhat) / s.width;
#pragma unroll
  for (int k = 0; k < kPerLane; ++k) {
    const int col = lane + k * kWarp;
    const float dx = rstd * (dxhat[k] - mean_dxhat - xhat[k] * mean_dxhat_xhat);
    // The dropout's derivative is its own mask and scale: dropped(dx) on the same draw.
    grad_h[base + col] = grad_out[base + col] + dropped(dx, base + col, s, scale);
  }
}

// 32 columns per block, 32 rows at a time; the 32 partial sums of a column meet in shared memory.
__global__ void __launch_bounds__(kWarp * kWarp)
    param_grads_kernel(LayerNormDropoutShape s, const float* __restrict__ grad_normed,
                                   const float* __restrict__ h, const float* __restrict__ mean_in,
                                   const float* __restrict__ rstd_in, float* __restrict__ grad_gamma,
                                   float* __restrict__ grad_beta, const float* __restrict__ grad_out,
                                   float* __restrict__ grad_out_bias) {
  __shared__ float gamma_part[kWarp][kWarp + 1], beta_part[kWarp][kWarp + 1], bias_part[kWarp][kWarp + 1];
  const int col = blockIdx.x * kWarp + threadIdx.x;
  const float scale = s.uniforms == nullptr ? 1.0f : 1.0f / (1.0f - s.p);
  float sum_gamma = 0, sum_beta = 0, sum_bias = 0;
  // kInFlight rows' loads issued together before any is used: the loop waits for memory once per
  // kInFlight rows, not once per row (1024 threads leave 64 registers each: four rows' loads fit).
  constexpr int kInFlight = 4;
  for (long row0 = threadIdx.y; row0 < s.rows; row0 += kWarp * kInFlight) {
    float g[kInFlight], x[kInFlight], mean[kInFlight], rstd[kInFlight], out[kInFlight];
#pragma unroll
    for (int k = 0; k < kInFlight; ++k) {
      const long row = row0 + k * kWarp, index = row * s.width + col;
      const bool valid = row < s.rows;
      g[k] = valid ? grad_normed[index] : 0.0f;
      x[k] = valid ? dropped(h[index], index, s, scale) : 0.0f;
      mean[k] = valid ? mean_in[row] : 0.0f;
      rstd[k] = valid ? rstd_in[row] : 0.0f;
      out[k] = valid && grad_out != nullptr ? grad_out[index] : 0.0f;
    }
#pragma unroll
    for (int k = 0; k < kInFlight; ++k) {
      sum_gamma += g[k] * ((x[k] - mean[k]) * rstd[k]);
      sum_beta += g[k];
      sum_bias += out[k];
    }
  }
  gamma_part[threadIdx.y][threadIdx.x] = sum_gamma;
  beta_part[threadIdx.y][threadIdx.x] = sum_beta;
  bias_part[threadIdx.y][threadIdx.x] = sum_bias;
  __syncthreads();
  if (threadIdx.y == 0) {
    float total_gamma = 0, total_beta = 0, total_bias = 0;
    for (int k = 0; k < kWarp; ++k) {
      total_gamma += gamma_part[k][threadIdx.x];
      total_beta += beta_part[k][threadIdx.x];
      total_bias += bias_part[k][threadIdx.x];
    }
    grad_gamma[col] += total_gamma;
    grad_beta[col] += total_beta;
    if (grad_out != nullptr) grad_out_bias[col] += total_bias;
  }
}

// Calls f with the values per lane as a compile-time constant; false for unsupported widths.
template <typename F>
bool with_per_lane(long width, F&& f) {
  switch (width) {
    case 32: f(std::integral_constant<int, 1>{}); return true;
    case 64: f(std::integral_constant<int, 2>{}); return true;
    case 128: f(std::integral_constant<int, 4>{}); return true;
    case 256: f(std::integral_constant<int, 8>{}); return true;
    case 512: f(std::integral_constant<int, 16>{}); return true;
    case 1024: f(std::integral_constant<int, 32>{}); return true;
    default: return false;
  }
}

int row_blocks(long rows) { return static_cast<int>((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

bool layer_norm_dropout_supports(long width) {
  return with_per_lane(width, [](auto) {});
}

bool launch_layer_norm_dropout_forward(const LayerNormDropoutShape& s, const float* h, const float* gamma,
                                       const float* beta, const float* bias, float* normed, float* residual,
                                       float* mean, float* rstd, void* stream) {
  if (s.rows == 0) return true;
  const bool ok = with_per_lane(s.width, [&](auto per_lane) {
    forward_kernel<decltype(per_lane)::value><<<row_blocks(s.rows), kRowsPerBlock * kWarp, 0,
                                                 static_cast<cudaStream_t>(stream)>>>(
        s, h, gamma, beta, bias, normed, residual, mean, rstd);
  });
  return ok && cudaGetLastError() == cudaSuccess;
}

bool launch_layer_norm_dropout_backward(const LayerNormDropoutShape& s, const float* grad_out,
                                        const float* grad_normed, const float* h, const float* gamma,
                                        const float* mean, const float* rstd, float* grad_h, void* stream) {
  if (s.rows == 0) return true;
  const bool ok = with_per_lane(s.width, [&](auto per_lane) {
    backward_kernel<decltype(per_lane)::value><<<row_blocks(s.rows), kRowsPerBlock * kWarp, 0,
                                                  static_cast<cudaStream_t>(stream)>>>(
        s, grad_out, grad_normed, h, gamma, mean, rstd, grad_h);
  });
  return ok && cudaGetLastError() == cudaSuccess;
}

bool launch_layer_norm_param_grads(const LayerNormDropoutShape& s, const float* grad_normed, const float* h,
                                   const float* mean, const float* rstd, float* grad_gamma, float* grad_beta,
                                   const float* grad_out, float* grad_out_bias, void* stream) {
  if (s.width % kWarp != 0) return false;
  if (s.rows == 0) return true;
  param_grads_kernel<<<static_cast<int>(s.width / kWarp), dim3(kWarp, kWarp), 0, static_cast<cudaStream_t>(stream)>>>(
      s, grad_normed, h, mean, rstd, grad_gamma, grad_beta, grad_out, grad_out_bias);
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace modiff::agents::cuda
