#pragma once
// Launchers of IQL's two losses as single kernels (iql_losses.cu), free of CUDA
// and torch headers so that C++ code can call them. Each computes its loss, the
// gradient the backward pass starts from and the logged statistics in one pass
// over the batch, where LibTorch's composite takes about twenty elementwise and
// reduction kernels per loss (the critic's step was a chain of ~110 small
// kernels, docs/benchmarks.md). Built only where a CUDA compiler and a CUDA
// LibTorch are found (MODIFF_CUDA_KERNELS).

namespace modiff::agents::cuda {

// From the target critics' values q_target [2, rows] and V(s) v [rows]: with q = min of the two heads and
// d = q - v, out[0] = mean(|expectile - 1(d < 0)| d^2) (the value loss), out[1] = mean(q), out[2] = std(q)
// (unbiased), and grad_v = d out[0] / d v.
bool launch_iql_value_loss(const float* q_target, const float* v, float* grad_v, float* out, long rows,
                           float expectile, void* stream);

// From the critics' values q [2, rows], the rewards, not-done flags and V(s') [rows]: with
// y = reward_scale r + discount not_done V(s'), loss[0] = mean((q1 - y)^2 + (q2 - y)^2) and grad_q its
// gradient with respect to q. reward and not_done are read with a row stride (columns of the batch table).
bool launch_iql_critic_loss(const float* q, const float* reward, const float* not_done, long data_stride,
                            const float* v_next, float* grad_q, float* loss, long rows, float reward_scale,
                            float discount, void* stream);

}  // namespace modiff::agents::cuda
