// Adam/AdamW over one flat parameter tensor in a single pass: LibTorch's
// multi-tensor kernel gives each 65,536-element chunk one thread block that
// walks it in dependent rounds, which left a 1.7 M-parameter update at 22-38 us;
// a grid-stride loop over float4s fills the GPU and moves the 28 bytes per
// parameter (read p, g, m, v; write p, m, v) at close to memory bandwidth.
// The math is torch.optim's: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), after
// p *= 1 - lr wd for AdamW; t is the step count already incremented. The cosine
// decay of the learning rate is computed here from t, not by five kernels of
// scalar arithmetic before the update (they sat on the step's critical path),
// and so are the step count's increment and, for a diffusion policy, its EMA.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "flat_adam_kernel.h"

namespace modiff::agents::cuda {
namespace {

struct Constants {
  float lr, beta1, beta2, eps, weight_decay;
  float decay_steps;  // > 0: cosine decay
  float ema_rate;
  long ema_start, ema_every;
};

// lr/2 (1 + cos(pi min(taken, D) / D)) after `taken` steps; cospi is exact at the end (lr 0).
__device__ inline float learning_rate(float taken, const Constants& c) {
  if (c.decay_steps <= 0) return c.lr;
  return 0.5f * c.lr * (1.0f + cospif(fminf(taken, c.decay_steps) / c.decay_steps));
}

__device__ inline void update(float& p, float g, float& m, float& v, float lr, float step_size, float inv_bc2_sqrt,
                              const Constants& c) {
  if (c.weight_decay > 0) p *= 1.0f - lr * c.weight_decay;
  m = c.beta1 * m + (1.0f - c.beta1) * g;
  v = c.beta2 * v + (1.0f - c.beta2) * g * g;
  p -= step_size * m / (sqrtf(v) * inv_bc2_sqrt + c.eps);
}

// LibTorch's lerp: a + w (b - a) for w < 0.5, b - (b - a)(1 - w) above (exact at w = 1: a copy).
__device__ inline float lerp(float a, float b, float w) { return w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w); }

// Ema: the parameters' moving average follows in the same pass (no second read of the parameters,
// no launch of its own); ema_weight is 0 on steps the EMA skips.
template <bool Ema>
__global__ void flat_adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                 float* __restrict__ v, float* __restrict__ ema, long n, float* step_ptr,
                                 unsigned int* blocks_done, Constants c) {
  // The step count is incremented here rather than by a kernel of its own before this one: every
  // block reads it, and the block that finishes last (after every read) writes the new count.
  const float step = *step_ptr + 1.0f, lr = learning_rate(step - 1, c);
  const float step_size = lr / (1.0f - powf(c.beta1, step));
  const float inv_bc2_sqrt = rsqrtf(1.0f - powf(c.beta2, step));
  float ema_weight = 0;
  if (Ema) {
    const long t = static_cast<long>(step);
    ema_weight = t % c.ema_every != 0 ? 0.0f : (t < c.ema_start ? 1.0f : c.ema_rate);
  }
  const long stride = static_cast<long>(gridDim.x) * blockDim.x;
  const long n4 = n / 4;
  auto* p4 = reinterpret_cast<float4*>(p);
  auto* m4 = reinterpret_cast<float4*>(m);
  auto* v4 = reinterpret_cast<float4*>(v);
  auto* e4 = reinterpret_cast<float4*>(ema);
  const auto* g4 = reinterpret_cast<const float4*>(g);
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n4; i += stride) {
    float4 pp = p4[i], gg = g4[i], mm = m4[i], vv = v4[i];
    update(pp.x, gg.x, mm.x, vv.x, lr, step_size, inv_bc2_sqrt, c);
    update(pp.y, gg.y, mm.y, vv.y, lr, step_size, inv_bc2_sqrt, c);
    update(pp.z, gg.z, mm.z, vv.z, lr, step_size, inv_bc2_sqrt, c);
    update(pp.w, gg.w, mm.w, vv.w, lr, step_size, inv_bc2_sqrt, c);
    p4[i] = pp;
    m4[i] = mm;
    v4[i] = vv;
    if (Ema && ema_weight > 0) {
      float4 ee = e4[i];
      ee.x = lerp(ee.x, pp.x, ema_weight);
      ee.y = lerp(ee.y, pp.y, ema_weight);
      ee.z = lerp(ee.z, pp.z, ema_weight);
      ee.w = lerp(ee.w, pp.w, ema_weight);
      e4[i] = ee;
    }
  }
  // The tail that does not fill a float4.
  for (long i = n4 * 4 + blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    update(p[i], g[i], m[i], v[i], lr, step_size, inv_bc2_sqrt, c);
    if (Ema && ema_weight > 0) ema[i] = lerp(ema[i], p[i], ema_weight);
  }
  __shared__ bool last;
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(blocks_done, 1u) == gridDim.x - 1;
  __syncthreads();
  if (last && threadIdx.x == 0) {
    *step_ptr = step;
    *blocks_done = 0;
  }
}

}  // namespace

bool launch_flat_adam(const FlatAdamLaunch& a, void* stream) {
  // float4 access needs 16-byte aligned buffers (LibTorch's allocations are).
  for (const void* ptr : {static_cast<const void*>(a.params), static_cast<const void*>(a.grads),
                          static_cast<const void*>(a.exp_avg), static_cast<const void*>(a.exp_avg_sq),
                          static_cast<const void*>(a.ema)})
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  if (a.ema != nullptr && a.ema_every < 1) return false;
  constexpr int threads = 256;
  const long vectors = (a.n + 3) / 4;
  const int blocks = static_cast<int>(std::max<long>(1, std::min<long>((vectors + threads - 1) / threads, 132L * 8)));
  const Constants c{a.lr,       a.beta1,     a.beta2,       a.eps, a.weight_decay, static_cast<float>(a.decay_steps),
                    a.ema_rate, a.ema_start, a.ema_every};
  auto* s = static_cast<cudaStream_t>(stream);
  if (a.ema != nullptr) {
    flat_adam_kernel<true><<<blocks, threads, 0, s>>>(a.params, a.grads, a.exp_avg, a.exp_avg_sq, a.ema, a.n, a.step,
                                                      a.blocks_done, c);
  } else {
    flat_adam_kernel<false><<<blocks, threads, 0, s>>>(a.params, a.grads, a.exp_avg, a.exp_avg_sq, nullptr, a.n,
                                                       a.step, a.blocks_done, c);
  }
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace modiff::agents::cuda
