#include "ops/iql_losses.h"

#include "runtime/cuda_support.h"
#ifdef MODIFF_CUDA_KERNELS
#include "cuda/iql_losses_kernel.h"
#endif

namespace modiff::agents {

ValueLossOutcome iql_value_loss_backward(const torch::Tensor& q_target, const torch::Tensor& v, double expectile,
                                        Kernels kernels) {
#ifdef MODIFF_CUDA_KERNELS
  if (kernels.own) {
    const long rows = v.size(0);
    const auto q = q_target.contiguous();
    auto grad_v = torch::empty({rows, 1}, v.options().requires_grad(false));
    auto out = torch::empty({3}, grad_v.options());
    if (cuda::launch_iql_value_loss(q.data_ptr<float>(), v.contiguous().data_ptr<float>(), grad_v.data_ptr<float>(),
                                    out.data_ptr<float>(), rows, static_cast<float>(expectile), current_cuda_stream())) {
      torch::autograd::backward({v}, {grad_v.view_as(v)});
      return {out[0], out[1], out[2]};
    }
  }
#else
  (void)kernels;
#endif
  auto q_min = torch::min(q_target[0], q_target[1]);
  auto loss = expectile_loss(q_min - v, expectile);
  loss.backward();
  return {loss.detach(), q_min.mean(), q_min.std()};
}

torch::Tensor iql_critic_loss_backward(const torch::Tensor& q, const torch::Tensor& reward,
                                       const torch::Tensor& not_done, const torch::Tensor& v_next,
                                       double reward_scale, double discount, Kernels kernels) {
#ifdef MODIFF_CUDA_KERNELS
  if (kernels.own) {
    const long rows = reward.size(0);
    auto grad_q = torch::empty(q.sizes(), q.options().requires_grad(false));
    auto loss = torch::empty({1}, grad_q.options());
    // The batch's columns are read in place where they share a row stride (no copies on the critic's chain).
    const bool strided = reward.dim() == 2 && not_done.dim() == 2 && reward.stride(0) == not_done.stride(0);
    const auto r = strided ? reward : reward.contiguous(), nd = strided ? not_done : not_done.contiguous();
    if (cuda::launch_iql_critic_loss(q.contiguous().data_ptr<float>(), r.data_ptr<float>(), nd.data_ptr<float>(),
                                     strided ? r.stride(0) : 1, v_next.contiguous().data_ptr<float>(),
                                     grad_q.data_ptr<float>(), loss.data_ptr<float>(), rows,
                                     static_cast<float>(reward_scale), static_cast<float>(discount),
                                     current_cuda_stream())) {
      torch::autograd::backward({q}, {grad_q});
      return loss[0];
    }
  }
#else
  (void)kernels;
#endif
  const auto target = reward * reward_scale + discount * not_done * v_next;
  auto loss = ((q[0] - target).pow(2) + (q[1] - target).pow(2)).mean();
  loss.backward();
  return loss.detach();
}

torch::Tensor expectile_loss(const torch::Tensor& diff, double expectile) {
  auto weight = torch::where(diff > 0, torch::full_like(diff, expectile), torch::full_like(diff, 1 - expectile));
  return (weight * diff.pow(2)).mean();
}

}  // namespace modiff::agents
