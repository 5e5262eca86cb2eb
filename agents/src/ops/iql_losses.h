#pragma once
// IQL's two regressions (guidance_iql.cpp), each computed with its backward pass. With modiff's own
// kernels (Kernels, chosen when the module is built) each loss, its gradient and its statistics are one
// kernel (cuda/iql_losses.cu) and the backward pass starts from that gradient; otherwise LibTorch's
// composite and autograd compute the same (the reference implementation's path).
#include <torch/torch.h>

#include "runtime/implementation.h"

namespace modiff::agents {

struct ValueLossOutcome {
  torch::Tensor loss, q_mean, q_std;  // detached scalars: the loss and the statistics of min(Q1, Q2)
};

// Expectile regression of V(s) on the minimum of the target critics: v [B, 1] (with its autograd graph),
// q_target [2, B, 1] (constants). Runs the backward pass into v's graph.
ValueLossOutcome iql_value_loss_backward(const torch::Tensor& q_target, const torch::Tensor& v, double expectile,
                                        Kernels kernels);

// Both critics q [2, B, 1] (with their graph) regressed on r reward_scale + discount not_done V(s')
// (reward, not_done, v_next [B, 1], constants). Runs the backward pass; returns the loss, detached.
torch::Tensor iql_critic_loss_backward(const torch::Tensor& q, const torch::Tensor& reward,
                                       const torch::Tensor& not_done, const torch::Tensor& v_next,
                                       double reward_scale, double discount, Kernels kernels);

// IQL's asymmetric squared loss: |tau - 1(u < 0)| u^2, averaged.
torch::Tensor expectile_loss(const torch::Tensor& diff, double expectile);

}  // namespace modiff::agents
