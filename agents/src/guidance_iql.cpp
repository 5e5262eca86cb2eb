// IQL's critic update as IDQL runs it (ddpm_iql_learner.py): V by expectile
// regression on the minimum target Q, then Q on r + gamma (1 - terminal) V(s'),
// then Polyak-averaged target critics. No policy is involved: the module
// depends on the data alone.
#include "guidance.h"

namespace modiff::agents {

GuidanceMetrics GuidanceModule::update_iql(const Batch& b) {
  GuidanceMetrics m;
  auto obs = normalizer_.apply(b.obs), next_obs = normalizer_.apply(b.next_obs);
  torch::Tensor q_target_min;
  {
    torch::NoGradGuard no_grad;
    auto [q1, q2] = q_target_->forward(obs, b.act);
    q_target_min = torch::min(q1, q2);
  }
  zero_grads(v_params_);
  auto value_loss = expectile_loss(q_target_min - v_->forward(obs), config_.expectile);
  value_loss.backward();
  v_optimizer_->step();

  torch::Tensor target;
  {
    torch::NoGradGuard no_grad;
    target = b.reward * reward_scale_ + config_.discount * b.not_done * v_->forward(next_obs);
  }
  zero_grads(q_params_);
  auto [q1, q2] = q_->forward(obs, b.act);
  auto critic_loss = ((q1 - target).pow(2) + (q2 - target).pow(2)).mean();
  critic_loss.backward();
  q_optimizer_->step();
  blend_into(q_target_params_, q_params_, config_.tau);

  m.critic_loss = critic_loss.detach();
  m.value_loss = value_loss.detach();
  m.q_mean = q_target_min.mean();
  m.q_std = q_target_min.std();
  return m;
}

}  // namespace modiff::agents
