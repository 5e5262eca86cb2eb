// IQL's value and critic losses, each with its input gradient and statistics, in one kernel: the
// batch (512 rows) fits one thread block, so a loss is a pass over the rows and a block reduction.
// The math is the composite's (guidance_iql.cpp keeps it for the CPU): sums in float, the order of
// the additions differs.
#include <cuda_runtime.h>

#include "block_sum.cuh"
#include "iql_losses_kernel.h"

namespace modiff::agents::cuda {
namespace {

constexpr int kThreads = 512;

__global__ void __launch_bounds__(kThreads) value_loss_kernel(const float* __restrict__ q_target,
                                                              const float* __restrict__ v, float* __restrict__ grad_v,
                                                              float* __restrict__ out, long rows, float expectile) {
  __shared__ float shared[kThreads / 32];
  const float inv_rows = 1.0f / static_cast<float>(rows);
  float loss = 0, q_sum = 0;
  for (long i = threadIdx.x; i < rows; i += kThreads) {
    const float q = fminf(q_target[i], q_target[rows + i]);
    const float d = q - v[i];
    const float weight = d > 0 ? expectile : 1.0f - expectile;
    loss += weight * d * d;
    q_sum += q;
    grad_v[i] = -2.0f * weight * d * inv_rows;
  }
  loss = block_sum<kThreads>(loss, shared);
  const float q_mean = block_sum<kThreads>(q_sum, shared) * inv_rows;
  float squares = 0;  // a second pass for the deviation: no cancellation
  for (long i = threadIdx.x; i < rows; i += kThreads) {
    const float dq = fminf(q_target[i], q_target[rows + i]) - q_mean;
    squares += dq * dq;
  }
  squares = block_sum<kThreads>(squares, shared);
  if (threadIdx.x == 0) {
    out[0] = loss * inv_rows;
    out[1] = q_mean;
    out[2] = rows > 1 ? sqrtf(squares / static_cast<float>(rows - 1)) : nanf("");
  }
}

__global__ void __launch_bounds__(kThreads) critic_loss_kernel(const float* __restrict__ q,
                                                               const float* __restrict__ reward,
                                                               const float* __restrict__ not_done, long data_stride,
                                                               const float* __restrict__ v_next,
                                                               float* __restrict__ grad_q, float* __restrict__ loss_out,
                                                               long rows, float reward_scale, float discount) {
  __shared__ float shared[kThreads / 32];
  const float inv_rows = 1.0f / static_cast<float>(rows);
  float loss = 0;
  for (long i = threadIdx.x; i < rows; i += kThreads) {
    const float target = reward[i * data_stride] * reward_scale + discount * not_done[i * data_stride] * v_next[i];
    const float d1 = q[i] - target, d2 = q[rows + i] - target;
    loss += d1 * d1 + d2 * d2;
    grad_q[i] = 2.0f * d1 * inv_rows;
    grad_q[rows + i] = 2.0f * d2 * inv_rows;
  }
  loss = block_sum<kThreads>(loss, shared);
  if (threadIdx.x == 0) loss_out[0] = loss * inv_rows;
}

}  // namespace

bool launch_iql_value_loss(const float* q_target, const float* v, float* grad_v, float* out, long rows,
                           float expectile, void* stream) {
  if (rows < 1) return false;
  value_loss_kernel<<<1, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(q_target, v, grad_v, out, rows, expectile);
  return cudaGetLastError() == cudaSuccess;
}

bool launch_iql_critic_loss(const float* q, const float* reward, const float* not_done, long data_stride,
                            const float* v_next, float* grad_q, float* loss, long rows, float reward_scale,
                            float discount, void* stream) {
  if (rows < 1) return false;
  critic_loss_kernel<<<1, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      q, reward, not_done, data_stride, v_next, grad_q, loss, rows, reward_scale, discount);
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace modiff::agents::cuda
