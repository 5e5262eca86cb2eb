// Diffusion-QL (Wang et al. 2023; Zhendong-Wang/Diffusion-Policies-for-Offline-RL,
// agents/ql_diffusion.py). Per joint step: critic update with a' drawn from the
// EMA policy at s', then the policy update
//   loss = BC + eta * q_loss,  q_loss = -Q_i(s, pi(s)).mean() / |Q_j(s, pi(s))|.mean().detach()
// with pi(s) sampled through the whole chain with gradients and the roles of
// the two critics swapped at random; then (with the optimizer step) the EMA. Under a frozen guidance the
// same policy loss goes through the frozen (target) critics: no critic
// gradients, optimizer state or target copies.
#include "algorithm.h"
#include "cuda_support.h"

#include <tuple>

namespace modiff::agents {
namespace {

class Dql : public Algorithm {
 public:
  Dql(const AlgorithmConfig& config, GuidanceModule& g, DiffusionModel& p, const OfflineData& d)
      : Algorithm(g, p, d), eta_(config.eta) {}

  // The critic's update (with the EMA's next actions), the policy's sampled chain and (where the
  // denoiser allows: separable_bc_gradients) its BC pass with its backward do not touch each other's
  // tensors: on CUDA they run as parallel branches, and the policy's Q-loss then goes through the
  // updated critic, exactly as in the sequential order.
  StepMetrics joint_step(const Batch& batch) override {
    GuidanceMetrics g;
    torch::Tensor bc, action;
    policy_.zero_grad();
    auto critic = [&] { g = guidance_.update(batch, policy_.sample_ema(batch.next_obs)); };
    if (policy_.separable_bc_gradients()) {
      run_concurrently(data_.device, {[&] { action = policy_.sample_train(batch.obs); }, critic,
                                      [&] { bc = policy_.bc_backward_separately(batch.obs, batch.act); }});
    } else {
      run_concurrently(data_.device, [&] { std::tie(bc, action) = policy_forward(batch); }, critic);
    }
    StepMetrics m = policy_update(batch, bc, action);
    m.critic_loss = g.critic_loss;
    m.q_mean = g.q_mean;
    m.q_std = g.q_std;
    return m;
  }

  StepMetrics diffusion_step(const Batch& batch) override {
    torch::Tensor bc, action;
    policy_.zero_grad();
    if (policy_.separable_bc_gradients()) {
      run_concurrently(data_.device, [&] { action = policy_.sample_train(batch.obs); },
                       [&] { bc = policy_.bc_backward_separately(batch.obs, batch.act); });
    } else {
      std::tie(bc, action) = policy_forward(batch);
    }
    return policy_update(batch, bc, action);
  }

 private:
  // The BC loss (with gradients, its backward still to come) and an action sampled through the whole chain.
  std::pair<torch::Tensor, torch::Tensor> policy_forward(const Batch& batch) {
    auto bc = policy_.bc_loss(batch.obs, batch.act);
    return {bc, policy_.sample_train(batch.obs)};
  }

  // The Q-loss through the chain (plus the BC loss where its backward has not run yet), then the step.
  StepMetrics policy_update(const Batch& batch, const torch::Tensor& bc, const torch::Tensor& action) {
    auto [q1, q2] = guidance_.policy_q(batch.obs, action);
    // The coin is drawn on the device so that a step never waits for the host.
    auto coin = torch::rand({}, q1.options()) > 0.5;
    auto q_loss = torch::where(coin, -q1.mean() / q2.abs().mean().detach(), -q2.mean() / q1.abs().mean().detach());
    if (policy_.separable_bc_gradients()) {
      (eta_ * q_loss).backward();
      policy_.add_separate_gradients();
    } else {
      (bc + eta_ * q_loss).backward();
    }
    policy_.optimizer_step();
    StepMetrics m;
    m.bc_loss = bc.detach();
    m.q_loss = q_loss.detach();
    return m;
  }

  double eta_;
};

}  // namespace

std::unique_ptr<Algorithm> make_dql(const AlgorithmConfig& c, GuidanceModule& g, DiffusionModel& p,
                                    const OfflineData& d) {
  return std::make_unique<Dql>(c, g, p, d);
}

}  // namespace modiff::agents
