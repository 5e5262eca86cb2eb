// IQL's critic update as IDQL runs it (ddpm_iql_learner.py): V by expectile
// regression on the minimum target Q, then Q on r + gamma (1 - terminal) V(s'),
// then Polyak-averaged target critics. No policy is involved: the module
// depends on the data alone.
#include "modules/guidance.h"
#include "ops/iql_losses.h"

namespace modiff::agents {

GuidanceMetrics GuidanceModule::update_iql(const Batch& b) {
  auto obs = normalizer_.apply(b.obs), next_obs = normalizer_.apply(b.next_obs);
  const auto obs_act = torch::cat({obs, b.act}, 1);  // the input of both critic pairs
  torch::Tensor q_target;
  {
    torch::NoGradGuard no_grad;
    q_target = q_target_->forward_stacked(obs_act);
  }
  zero_grads(v_params_);
  const auto value = iql_value_loss_backward(q_target, v_->forward(obs), config_.expectile, kernels_);
  v_optimizer_->step();

  torch::Tensor v_next;
  {
    torch::NoGradGuard no_grad;
    v_next = v_->forward(next_obs);
  }
  zero_grads(q_params_);
  const auto critic_loss = iql_critic_loss_backward(q_->forward_stacked(obs_act), b.reward, b.not_done, v_next,
                                                    reward_scale_, config_.discount, kernels_);
  q_optimizer_->step();
  blend_into(q_target_params_, q_params_, config_.tau);

  GuidanceMetrics m;
  m.critic_loss = critic_loss;
  m.value_loss = value.loss;
  m.q_mean = value.q_mean;
  m.q_std = value.q_std;
  return m;
}

}  // namespace modiff::agents
