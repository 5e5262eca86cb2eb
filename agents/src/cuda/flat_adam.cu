// Adam/AdamW over one flat parameter tensor in a single pass: LibTorch's
// multi-tensor kernel gives each 65,536-element chunk one thread block that
// walks it in dependent rounds, which left a 1.7 M-parameter update at 22-38 us;
// a grid-stride loop over float4s fills the GPU and moves the 28 bytes per
// parameter (read p, g, m, v; write p, m, v) at close to memory bandwidth.
// The math is torch.optim's: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), after
// p *= 1 - lr wd for AdamW; t is the step count already incremented. The cosine
// decay of the learning rate is computed here from t, not by five kernels of
// scalar arithmetic before the update (they sat on the step's critical path).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "flat_adam_kernel.h"

namespace modiff::agents::cuda {
namespace {

struct Constants {
  float lr, beta1, beta2, eps, weight_decay;
  float decay_steps;  // > 0: cosine decay
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

__global__ void flat_adam_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                 float* __restrict__ v, long n, const float* __restrict__ step_ptr, Constants c) {
  const float step = *step_ptr, lr = learning_rate(step - 1, c);
  const float step_size = lr / (1.0f - powf(c.beta1, step));
  const float inv_bc2_sqrt = rsqrtf(1.0f - powf(c.beta2, step));
  const long stride = static_cast<long>(gridDim.x) * blockDim.x;
  const long n4 = n / 4;
  auto* p4 = reinterpret_cast<float4*>(p);
  auto* m4 = reinterpret_cast<float4*>(m);
  auto* v4 = reinterpret_cast<float4*>(v);
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
  }
  // The tail that does not fill a float4.
  for (long i = n4 * 4 + blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n; i += stride)
    update(p[i], g[i], m[i], v[i], lr, step_size, inv_bc2_sqrt, c);
}

}  // namespace

bool launch_flat_adam(const FlatAdamLaunch& a, void* stream) {
  // float4 access needs 16-byte aligned buffers (LibTorch's allocations are).
  for (const void* ptr : {static_cast<const void*>(a.params), static_cast<const void*>(a.grads),
                          static_cast<const void*>(a.exp_avg), static_cast<const void*>(a.exp_avg_sq)})
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  constexpr int threads = 256;
  const long vectors = (a.n + 3) / 4;
  const int blocks = static_cast<int>(std::min<long>((vectors + threads - 1) / threads, 132L * 8));
  flat_adam_kernel<<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(
      a.params, a.grads, a.exp_avg, a.exp_avg_sq, a.n, a.step,
      Constants{a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, static_cast<float>(a.decay_steps)});
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace modiff::agents::cuda
