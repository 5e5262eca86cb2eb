// Diffusion-QL's critic update (agents/ql_diffusion.py): both Q networks
// regressed on r + gamma (1 - terminal) min Q'(s', a'), gradient norm clipped,
// targets Polyak-averaged. a' is whatever the caller gives: the diffusion
// policy's EMA sample in joint training, the dataset's next action when the
// module is trained on its own.
#include "modules/guidance.h"

namespace modiff::agents {

GuidanceMetrics GuidanceModule::update_twin_q(const Batch& b, const torch::Tensor& next_action) {
  GuidanceMetrics m;
  auto obs = normalizer_.apply(b.obs), next_obs = normalizer_.apply(b.next_obs);
  torch::Tensor target;
  {
    torch::NoGradGuard no_grad;
    auto [t1, t2] = q_target_->forward(next_obs, next_action);
    target = b.reward * reward_scale_ + config_.discount * b.not_done * torch::min(t1, t2);
  }
  zero_grads(q_params_);
  auto [q1, q2] = q_->forward(obs, b.act);
  auto critic_loss = torch::mse_loss(q1, target) + torch::mse_loss(q2, target);
  critic_loss.backward();
  q_optimizer_->step();
  blend_into(q_target_params_, q_params_, config_.tau);

  auto q = torch::min(q1, q2).detach();
  m.critic_loss = critic_loss.detach();
  m.q_mean = q.mean();
  m.q_std = q.std();
  return m;
}

}  // namespace modiff::agents
