// The time path's backward pass: a kernel per layer over 32 x 32 tiles of its weight, one for the
// Fourier features, and the join of the step table into the batch. The products are tiny (T = 5 rows):
// these kernels are bound by latency and instruction count, so the work is spread over many blocks
// with a few weights per thread, each thread's loads are issued together before they are used, and the
// loops over the rows are unrolled to a bound fixed at compile time (8 or 16). A tile's thread reads
// one weight and makes both products from it: the input gradient (dY W, summed over the tile's warps,
// then over the tiles by the next kernel) and the weight gradient (dY^T x, added in place).
#include <cuda_runtime.h>

#include <algorithm>

#include "time_path_kernels.h"

namespace modiff::agents::cuda {
namespace {

constexpr int kTile = 32;
constexpr float kTwoPi = 6.28318530717958647692f;

__global__ void step_rows_forward_kernel(const float* __restrict__ data, const float* __restrict__ table,
                                         const int64_t* __restrict__ t, float* __restrict__ out, int batch,
                                         int width) {
  const int n = batch * width;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    out[i] = data[i] + table[static_cast<int>(t[i / width]) * width + i % width];
}

template <TimePathActivation Kind>
__device__ float derivative(float pre) {
  if constexpr (Kind == TimePathActivation::Silu) {
    const float s = 1.0f / (1.0f + expf(-pre));
    return s * (1.0f + pre * (1.0f - s));
  } else if constexpr (Kind == TimePathActivation::Mish) {
    const float s = 1.0f / (1.0f + expf(-pre));
    const float th = tanhf(pre > 20.0f ? pre : log1pf(expf(pre)));
    return th + pre * s * (1.0f - th * th);
  } else if constexpr (Kind == TimePathActivation::Relu) {
    return pre > 0.0f ? 1.0f : 0.0f;
  }
  return 1.0f;
}

// The sum over `parts` partial sums of element e (stride `elements` between parts), in order.
__device__ float sum_parts(const float* __restrict__ parts, int count, int elements, int e) {
  constexpr int kInFlight = 8;
  float sum = 0;
  for (int q0 = 0; q0 < count; q0 += kInFlight) {
    float v[kInFlight];
#pragma unroll
    for (int q = 0; q < kInFlight; ++q) v[q] = q0 + q < count ? parts[(q0 + q) * elements + e] : 0.0f;
#pragma unroll
    for (int q = 0; q < kInFlight; ++q) sum += v[q];
  }
  return sum;
}

// One thread's share of a weight tile: the input column `column` against the tile's outputs
// tile_row * 32 + warp * PerWarp + k. W's gradient is added in place (dW += dY^T x) and the input
// gradient's terms (dY W) summed into acc. dy holds the tile's output gradient, zero past the rows and
// outputs there are; x the layer's input at `column` for each row.
template <int MaxRows, int PerWarp>
__device__ void weight_tile_backward(const float (*dy)[kTile], const float (&x)[MaxRows], float (&acc)[MaxRows],
                                     const float* __restrict__ weight, float* __restrict__ weight_grad, int ld,
                                     int offset, int column, int in, int out, int tile_row, int warp) {
  if (column >= in) return;
  float w[PerWarp], old[PerWarp];
#pragma unroll
  for (int k = 0; k < PerWarp; ++k) {
    const int i = tile_row * kTile + warp * PerWarp + k, at = i * ld + offset + column;
    w[k] = i < out ? weight[at] : 0.0f;
    old[k] = i < out && weight_grad != nullptr ? weight_grad[at] : 0.0f;
  }
#pragma unroll
  for (int k = 0; k < PerWarp; ++k) {
    const int owned = warp * PerWarp + k, i = tile_row * kTile + owned;
    float dw = 0;
#pragma unroll
    for (int r = 0; r < MaxRows; ++r) {
      const float d = dy[r][owned];
      acc[r] += d * w[k];
      dw += d * x[r];
    }
    if (i < out && weight_grad != nullptr) weight_grad[i * ld + offset + column] = old[k] + dw;
  }
}

// Block (column tile, output tile) of 16 warps. First the table's gradient for the tile's 32 outputs
// (every block of a tile row makes it: the batch is read from L2 once per column tile, which costs
// less than a kernel of its own); then the 32 x 32 weight tile, two outputs per warp.
template <int MaxRows>
__global__ void __launch_bounds__(512) first_layer_backward_kernel(TimePathFirstLayerBackward p) {
  constexpr int kWarps = 16, kRowBatch = 16;
  __shared__ float part[kWarps][MaxRows][kTile];
  __shared__ float grad_table[MaxRows][kTile];
  const float* __restrict__ grad = p.grad;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int steps = static_cast<int>(p.steps), out = static_cast<int>(p.out), in = static_cast<int>(p.in);
  const int batch = static_cast<int>(p.batch), ld = static_cast<int>(p.ld), offset = static_cast<int>(p.offset);
  const int output = blockIdx.y * kTile + lane, column = blockIdx.x * kTile + lane;

#pragma unroll
  for (int s = 0; s < MaxRows; ++s) part[warp][s][lane] = 0;
  if (output < out) {
    for (int b0 = warp; b0 < batch; b0 += kWarps * kRowBatch) {
      float g[kRowBatch];
      int s[kRowBatch];
#pragma unroll
      for (int k = 0; k < kRowBatch; ++k) {
        const int b = b0 + k * kWarps;
        s[k] = b < batch ? static_cast<int>(p.t[b]) : -1;
        g[k] = b < batch ? grad[b * out + output] : 0.0f;
      }
#pragma unroll
      for (int k = 0; k < kRowBatch; ++k)
        if (s[k] >= 0 && s[k] < steps) part[warp][s[k]][lane] += g[k];
    }
  }
  __syncthreads();
  if (threadIdx.x < MaxRows * kTile) {
    const int s = threadIdx.x / kTile, l = threadIdx.x % kTile;
    float sum = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += part[w][s][l];
    grad_table[s][l] = sum;
  }
  __syncthreads();
  if (p.bias_grad != nullptr && blockIdx.x == 0 && threadIdx.x < kTile && output < out) {
    float sum = 0;
#pragma unroll
    for (int s = 0; s < MaxRows; ++s)
      if (s < steps) sum += grad_table[s][lane];
    p.bias_grad[output] += sum;
  }

  constexpr int kPerWarp = kTile / kWarps;
  float x[MaxRows], acc[MaxRows];
#pragma unroll
  for (int r = 0; r < MaxRows; ++r) {
    acc[r] = 0;
    x[r] = column < in && r < steps ? p.rows[r * in + column] : 0.0f;
  }
  weight_tile_backward<MaxRows, kPerWarp>(grad_table, x, acc, p.weight, p.weight_grad, ld, offset, column, in, out,
                                         blockIdx.y, warp);
  __syncthreads();
#pragma unroll
  for (int r = 0; r < MaxRows; ++r) part[warp][r][lane] = acc[r];
  __syncthreads();
  if (threadIdx.x < MaxRows * kTile) {
    const int r = threadIdx.x / kTile, l = threadIdx.x % kTile, c = blockIdx.x * kTile + l;
    if (r < steps && c < in) {
      float sum = 0;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += part[w][r][l];
      p.grad_rows[(blockIdx.y * steps + r) * in + c] = sum;
    }
  }
}

// Block (column tile, output tile) of 8 warps, four outputs per warp.
template <int MaxRows, TimePathActivation Kind>
__global__ void __launch_bounds__(256) layer_backward_kernel(TimePathLayerBackward p) {
  constexpr int kWarps = 8, kPerWarp = kTile / kWarps;
  __shared__ float dy[MaxRows][kTile];
  __shared__ float part[kWarps][MaxRows][kTile];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rows = static_cast<int>(p.rows), out = static_cast<int>(p.out), in = static_cast<int>(p.in);
  const int column = blockIdx.x * kTile + lane;

  // The tile's output gradient: the partial sums added, times the activation's derivative.
  for (int e = threadIdx.x; e < MaxRows * kTile; e += blockDim.x) {
    const int r = e / kTile, i = blockIdx.y * kTile + e % kTile;
    float d = 0;
    if (r < rows && i < out) {
      d = sum_parts(p.grad_out, static_cast<int>(p.grad_out_parts), rows * out, r * out + i);
      if constexpr (Kind != TimePathActivation::None) d *= derivative<Kind>(p.pre[r * out + i]);
    }
    dy[r][e % kTile] = d;
  }
  __syncthreads();
  if (p.bias_grad != nullptr && blockIdx.x == 0 && threadIdx.x < kTile && blockIdx.y * kTile + lane < out) {
    float sum = 0;
#pragma unroll
    for (int r = 0; r < MaxRows; ++r) sum += dy[r][lane];
    p.bias_grad[blockIdx.y * kTile + lane] += sum;
  }

  float x[MaxRows], acc[MaxRows];
#pragma unroll
  for (int r = 0; r < MaxRows; ++r) {
    acc[r] = 0;
    x[r] = column < in && r < rows ? p.input[r * in + column] : 0.0f;
  }
  weight_tile_backward<MaxRows, kPerWarp>(dy, x, acc, p.weight, p.weight_grad, in, 0, column, in, out, blockIdx.y,
                                         warp);
  if (p.grad_in == nullptr) return;
#pragma unroll
  for (int r = 0; r < MaxRows; ++r) part[warp][r][lane] = acc[r];
  __syncthreads();
  for (int e = threadIdx.x; e < MaxRows * kTile; e += blockDim.x) {
    const int r = e / kTile, l = e % kTile, c = blockIdx.x * kTile + l;
    if (r < rows && c < in) {
      float sum = 0;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) sum += part[w][r][l];
      p.grad_in[(blockIdx.y * rows + r) * in + c] = sum;
    }
  }
}

// Thread (frequency m, step value r): r's term of d/dW_m = sum_r 2 pi t_r (cos f dF_sin - sin f dF_cos),
// f = 2 pi t_r W_m rounded as the forward kernel rounds it; the terms are then added in order of r.
template <int MaxRows>
__global__ void __launch_bounds__(64 * MaxRows)
    fourier_backward_kernel(const float* __restrict__ grad_features, int parts, int rows, int half,
                            const float* __restrict__ times, const float* __restrict__ w, float* __restrict__ grad_w) {
  __shared__ float terms[MaxRows][64];
  const int m = blockIdx.x * 64 + threadIdx.x, r = threadIdx.y;
  float term = 0;
  if (m < half && r < rows) {
    const int elements = rows * 2 * half;
    const float t = times[r], f = (t * w[m]) * kTwoPi;
    const float d_cos = sum_parts(grad_features, parts, elements, r * 2 * half + m);
    const float d_sin = sum_parts(grad_features, parts, elements, r * 2 * half + half + m);
    term = kTwoPi * t * (cosf(f) * d_sin - sinf(f) * d_cos);
  }
  terms[r][threadIdx.x] = term;
  __syncthreads();
  if (r == 0 && m < half) {
    float g = 0;
#pragma unroll
    for (int k = 0; k < MaxRows; ++k) g += terms[k][threadIdx.x];
    grad_w[m] += g;
  }
}

dim3 tiles(long in, long out) {
  return dim3(static_cast<unsigned>((in + kTile - 1) / kTile), static_cast<unsigned>((out + kTile - 1) / kTile));
}

template <int MaxRows>
void launch_layer(const TimePathLayerBackward& p, cudaStream_t stream) {
  const dim3 grid = tiles(p.in, p.out);
  switch (p.activation) {
    case TimePathActivation::None:
      layer_backward_kernel<MaxRows, TimePathActivation::None><<<grid, 256, 0, stream>>>(p);
      break;
    case TimePathActivation::Silu:
      layer_backward_kernel<MaxRows, TimePathActivation::Silu><<<grid, 256, 0, stream>>>(p);
      break;
    case TimePathActivation::Mish:
      layer_backward_kernel<MaxRows, TimePathActivation::Mish><<<grid, 256, 0, stream>>>(p);
      break;
    case TimePathActivation::Relu:
      layer_backward_kernel<MaxRows, TimePathActivation::Relu><<<grid, 256, 0, stream>>>(p);
      break;
  }
}

bool rows_fit(long rows) { return rows >= 1 && rows <= kTimePathMaxRows; }

}  // namespace

long time_path_parts(long out) { return (out + kTile - 1) / kTile; }

bool launch_step_rows_forward(const float* data, const float* table, const int64_t* t, float* out, long batch,
                              long width, void* stream) {
  if (batch < 1 || width < 1 || batch * width > (1L << 30)) return false;
  const long n = batch * width;
  const auto blocks = static_cast<unsigned>(std::min<long>((n + 255) / 256, 1024));
  step_rows_forward_kernel<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(
      data, table, t, out, static_cast<int>(batch), static_cast<int>(width));
  return cudaGetLastError() == cudaSuccess;
}

bool launch_time_path_first_layer_backward(const TimePathFirstLayerBackward& p, void* stream) {
  if (p.batch < 1 || !rows_fit(p.steps) || p.in < 1 || p.out < 1 || p.offset < 0 || p.offset + p.in > p.ld ||
      p.batch * p.out > (1L << 30) || p.out * p.ld > (1L << 30))
    return false;
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.steps <= 8)
    first_layer_backward_kernel<8><<<tiles(p.in, p.out), 512, 0, s>>>(p);
  else
    first_layer_backward_kernel<16><<<tiles(p.in, p.out), 512, 0, s>>>(p);
  return cudaGetLastError() == cudaSuccess;
}

bool launch_time_path_layer_backward(const TimePathLayerBackward& p, void* stream) {
  if (!rows_fit(p.rows) || p.in < 1 || p.out < 1 || p.grad_out_parts < 1 || p.out * p.in > (1L << 30)) return false;
  if (p.activation != TimePathActivation::None && p.pre == nullptr) return false;
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.rows <= 8)
    launch_layer<8>(p, s);
  else
    launch_layer<16>(p, s);
  return cudaGetLastError() == cudaSuccess;
}

bool launch_time_path_fourier_backward(const float* grad_features, long parts, long rows, long half,
                                       const float* times, const float* w, float* grad_w, void* stream) {
  if (parts < 1 || !rows_fit(rows) || half < 1) return false;
  const auto blocks = static_cast<unsigned>((half + 63) / 64);
  const auto s = static_cast<cudaStream_t>(stream);
  const int p = static_cast<int>(parts), r = static_cast<int>(rows), h = static_cast<int>(half);
  if (rows <= 8)
    fourier_backward_kernel<8><<<blocks, dim3(64, 8), 0, s>>>(grad_features, p, r, h, times, w, grad_w);
  else
    fourier_backward_kernel<16><<<blocks, dim3(64, 16), 0, s>>>(grad_features, p, r, h, times, w, grad_w);
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace modiff::agents::cuda
