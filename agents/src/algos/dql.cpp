// Diffusion-QL (Wang et al. 2023; Zhendong-Wang/Diffusion-Policies-for-Offline-RL,
// agents/ql_diffusion.py). Per joint step: critic update with a' drawn from the
// EMA policy at s', then the policy update
//   loss = BC + eta * q_loss,  q_loss = -Q_i(s, pi(s)).mean() / |Q_j(s, pi(s))|.mean().detach()
// with pi(s) sampled through the whole chain with gradients and the roles of
// the two critics swapped at random; then (with the optimizer step) the EMA. Under a frozen guidance the
// same policy loss goes through the frozen (target) critics: no critic
// gradients, optimizer state or target copies.
#include "algos/algorithm.h"
#include "algos/stacked_steps.h"
#include "runtime/cuda_support.h"

#include <tuple>

namespace modiff::agents {

// Diffusion-QL's numbers: the fields of AlgorithmConfig and the Q-loss weight.
struct DqlConfig : AlgorithmConfig {
  double eta = 0;  // weight of the normalized Q-loss in the policy loss
  void describe(Hyperparameters& h, const std::string& dataset) override;
};

namespace {
const std::string kDqlSource = "Diffusion-QL ql_diffusion.py";
}  // namespace

// Diffusion-QL's gradient-norm limits per locomotion dataset (its hyperparameter table, main.py), for the
// actor and the critic alike.
double diffusion_ql_grad_norm(const std::string& dataset) {
  struct Entry {
    const char* env;
    double medium, replay, expert_mix;
  };
  static const Entry table[] = {{"hopper", 9, 4, 5}, {"halfcheetah", 9, 2, 7}, {"walker2d", 1, 4, 5}};
  for (const auto& e : table) {
    if (dataset.find(e.env) == std::string::npos) continue;
    if (dataset.find("medium-replay") != std::string::npos) return e.replay;
    if (dataset.find("medium-expert") != std::string::npos) return e.expert_mix;
    if (dataset.find("medium") != std::string::npos) return e.medium;
  }
  return 5.0;  // datasets outside the table (ant, random, expert): a middle value
}

const char* const kDiffusionQlGradNormSource =
    "Diffusion-QL main.py per dataset: hopper 9/4/5, halfcheetah 9/2/7, walker2d 1/4/5 (medium / medium-replay / "
    "medium-expert), 5 elsewhere";

void DqlConfig::describe(Hyperparameters& h, const std::string& dataset) {
  auto& p = policy;
  const std::string& src = kDqlSource;
  h.number("batch", batch, 256, "[1, 1048576]", "Diffusion-QL main.py: batch_size");
  h.flag("normalize_obs", normalize_obs, false, "Diffusion-QL main.py: raw observations");
  h.number("eta", eta, 1.0, "[0, 1e6]", "Diffusion-QL main.py: eta 1.0 on locomotion");
  h.choice("policy.denoiser", p.denoiser.kind, "mlp", {"ln-resnet", "mlp"}, "Diffusion-QL model.py: MLP");
  h.number("policy.hidden", p.denoiser.hidden, 256, "[1, 65536]", "Diffusion-QL model.py: 256");
  h.number("policy.blocks", p.denoiser.blocks, 3, "[1, 64]", "Diffusion-QL model.py: 3 hidden layers");
  h.number("policy.block_width", p.denoiser.block_width, 1024, "[1, 65536]", "unused by the MLP (ln-resnet only)");
  h.number("policy.dropout", p.denoiser.dropout, 0.0, "[0, 1)", "Diffusion-QL model.py: none");
  h.number("policy.time_dim", p.denoiser.time_dim, 16, "[2, 65536]", "Diffusion-QL model.py: sinusoidal 16");
  h.activation("policy.activation", p.denoiser.activation, Activation::Mish, "Diffusion-QL model.py: Mish");
  h.choice("policy.noise_schedule", p.diffusion.schedule, "vp", {"vp", "cosine", "linear"}, "Diffusion-QL diffusion.py: vp");
  h.number("policy.diffusion_steps", p.diffusion.steps, 5, "[1, 1000]", "Diffusion-QL main.py: T = 5");
  h.choice("policy.sampler", p.diffusion.sampler, "posterior", {"eps-clip", "posterior"},
           "Diffusion-QL diffusion.py: posterior with x0 clipped");
  h.choice("policy.loss", p.diffusion.loss, "mean", {"sum", "mean"}, "Diffusion-QL diffusion.py: mean squared error");
  h.number("policy.lr", p.adam.lr, 3e-4, "(0, 1]", "Diffusion-QL main.py: lr");
  h.flag("policy.lr_cosine", policy_lr_cosine, true, src + ": lr_decay (CosineAnnealingLR)");
  h.number("policy.beta1", p.adam.beta1, 0.9, "[0, 1)", "torch.optim.Adam default");
  h.number("policy.beta2", p.adam.beta2, 0.999, "[0, 1)", "torch.optim.Adam default");
  h.number("policy.eps", p.adam.eps, 1e-8, "(0, 1]", "torch.optim.Adam default");
  h.number("policy.weight_decay", p.adam.weight_decay, 0.0, "[0, 1]", "torch.optim.Adam: none");
  h.number("policy.max_grad_norm", p.adam.max_grad_norm, diffusion_ql_grad_norm(dataset), "[0, 1e6]",
           kDiffusionQlGradNormSource);
  h.number("policy.ema_rate", p.ema_rate, 0.005, "(0, 1]", src + ": ema_decay 0.995");
  h.number("policy.ema_start", p.ema_start, 1000L, "[0, 1000000000]", src + ": step_start_ema 1000");
  h.number("policy.ema_every", p.ema_every, 5, "[1, 1000000]", src + ": update_ema_every 5");
  h.flag("policy.sample_with_ema", p.sample_with_ema, false, src + ": samples from the actor itself");
  h.number("policy.candidates", p.candidates, 50, "[1, 4096]", src + ": sample_action repeats the state 50 times");
  h.choice("policy.select", p.select, "softmax", {"argmax", "softmax", "expectile"}, src + ": softmax(Q) sampling");
}

// Diffusion-QL's critic: twin Q, each 3 x (256, Mish), its learning rate decayed and its gradient clipped as the actor's.
void describe_twin_q_guidance(Hyperparameters& h, AlgorithmConfig& c, const std::string& dataset) {
  auto& g = c.guidance;
  const std::string& src = kDqlSource;
  g.kind = "twin-q";
  h.number("guidance.hidden", g.hidden, 256, "[1, 65536]", "Diffusion-QL model.py: Critic 256");
  h.number("guidance.layers", g.layers, 3, "[1, 64]", "Diffusion-QL model.py: Critic 3 hidden layers");
  h.activation("guidance.activation", g.activation, Activation::Mish, "Diffusion-QL model.py: Mish");
  h.number("guidance.discount", g.discount, 0.99, "[0, 1]", "Diffusion-QL main.py: discount");
  h.number("guidance.tau", g.tau, 0.005, "(0, 1]", src + ": tau, every step");
  h.number("guidance.lr", g.lr, 3e-4, "(0, 1]", "Diffusion-QL main.py: lr");
  h.flag("guidance.lr_cosine", c.guidance_lr_cosine, true, src + ": lr_decay (CosineAnnealingLR)");
  h.number("guidance.max_grad_norm", g.max_grad_norm, diffusion_ql_grad_norm(dataset), "[0, 1e6]",
           kDiffusionQlGradNormSource);
  h.flag("guidance.scale_rewards", g.scale_rewards, false, "Diffusion-QL main.py: raw rewards");
}

namespace {

class Dql : public Algorithm {
 public:
  Dql(const DqlConfig& config, GuidanceModule& g, DiffusionModel& p, const OfflineData& d)
      : Algorithm(g, p, d), eta_(config.eta) {}

  // The critic's update (with the EMA's next actions), the policy's sampled chain and its BC pass do not
  // touch each other's tensors: in the fast implementation on CUDA they run as parallel branches, and the
  // policy's Q-loss then goes through the updated critic, exactly as in the sequential order (the chain,
  // the critic, the BC pass, in which the reference implementation runs them).
  StepMetrics joint_step(const Batch& batch) override {
    GuidanceMetrics g;
    torch::Tensor bc, action;
    policy_.zero_grad();
    concurrently({[&] { action = policy_.sample_train(batch.obs); },
                  [&] { g = guidance_.update(batch, policy_.sample_ema(batch.next_obs)); },
                  [&] { bc = bc_pass(batch); }});
    StepMetrics m = policy_update(batch, bc, action);
    m.critic_loss = g.critic_loss;
    m.q_mean = g.q_mean;
    m.q_std = g.q_std;
    return m;
  }

  StepMetrics diffusion_step(const Batch& batch) override {
    torch::Tensor bc, action;
    policy_.zero_grad();
    concurrently({[&] { action = policy_.sample_train(batch.obs); }, [&] { bc = bc_pass(batch); }});
    return policy_update(batch, bc, action);
  }

 private:
  // The BC loss: with its backward pass done into the second gradient buffer where the denoiser allows
  // (separable_bc_gradients), else with gradients, its backward still to come (with the Q-loss's).
  torch::Tensor bc_pass(const Batch& batch) {
    if (policy_.separable_bc_gradients()) return policy_.bc_backward_separately(batch.obs, batch.act);
    return policy_.bc_loss(batch.obs, batch.act);
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

// Diffusion-QL's joint and diffusion phases for a stack of runs: Dql::joint_step and Dql::diffusion_step over
// [K, B, ...] tensors, the critics' update beside the policies' passes, each run's Q-loss normalized by its own
// critic.
class DqlStack : public StepByStep {
 public:
  DqlStack(const std::string& phase, const std::vector<StackMember>& members)
      : StepByStep(members), eta_(static_cast<const DqlConfig&>(*members.front().config).eta), policy_(members_) {
    if (phase == "joint") critic_.emplace(members_);
    else frozen_.emplace(members_);
  }

 private:
  StepMetrics step(const Batch& b) override {
    const bool joint = critic_.has_value();
    const auto d = draws(b);
    const size_t first = joint ? 1 : 0;  // d: [next-action noise,] steps, noise, chain noise, coin
    torch::Tensor bc, action;
    GuidanceMetrics g;
    // The policy's two passes on one branch: the weights' leaves then take their gradients on the stream that
    // makes them (a leaf used from two streams would make autograd join them, and warn).
    auto policy_passes = [&] {
      bc = policy_.bc_loss(b, d[first], d[first + 1]);
      action = policy_.sample_train(b.obs, d[first + 2]);
    };
    if (joint) {
      auto critic_update = [&] { g = critic_->update(b, policy_.sample_ema(b.next_obs, d[0])); };
      run_concurrently(b.act.device(), {policy_passes, critic_update});
    } else {
      policy_passes();
    }
    const auto [q1, q2] = joint ? critic_->policy_q(b.obs, action) : frozen_->policy_q(b.obs, action);
    auto mean = [](const torch::Tensor& t) { return t.mean({1, 2}); };
    const auto q_loss = torch::where(d[first + 3] > 0.5, -mean(q1) / mean(q2.abs()).detach(),
                                     -mean(q2) / mean(q1.abs()).detach());
    policy_.step(bc + eta_ * q_loss);
    StepMetrics m = guidance_step_metrics(g);  // twin-q: no value loss
    m.bc_loss = bc.detach();
    m.q_loss = q_loss.detach();
    return m;
  }

  // Each run's draws in the order its own step makes them on CUDA: the branches of joint_step run on the host
  // the critic's first (the EMA's chain), then the BC pass's, then the sampled chain's; the coin last.
  std::vector<torch::Tensor> draws(const Batch& b) const {
    const long batch = b.act.size(1), act_dim = b.act.size(2);
    const int steps = policy_.ddpm().config().steps;
    const auto options = b.act.options();
    return stacked_draws(members_, [&] {
      std::vector<torch::Tensor> drawn;
      if (critic_) drawn.push_back(draw_sampling_noise(policy_.ddpm(), batch, act_dim, options));
      for (const auto& t : draw_noising(steps, batch, act_dim, options)) drawn.push_back(t);
      drawn.push_back(draw_sampling_noise(policy_.ddpm(), batch, act_dim, options));
      drawn.push_back(torch::rand({}, options));
      return drawn;
    });
  }

  const double eta_;
  MlpPolicyStack policy_;
  std::optional<TdCriticStack> critic_;       // joint: the critics trained beside the policies
  std::optional<FrozenCriticStack> frozen_;  // diffusion: the frozen guidance's target critics
};

// The MLP denoiser without a condition, sampled by a chain; in the joint phase beside twin-q critics.
bool dql_stacks(const std::string& phase, const AlgorithmConfig& c, torch::Device) {
  const auto& p = c.policy;
  const bool chain = p.diffusion.sampler == "posterior" || p.diffusion.sampler == "eps-clip";
  return p.denoiser.kind == "mlp" && p.denoiser.cond_dim == 0 && chain &&
         (phase == "diffusion" || c.guidance.kind == "twin-q");
}

}  // namespace

extern const AlgorithmEntry kDql = {
    "dql", "twin-q", [] { return std::unique_ptr<AlgorithmConfig>(new DqlConfig); },
    [](const AlgorithmConfig& c, GuidanceModule& g, DiffusionModel& p, const OfflineData& d) {
      return std::unique_ptr<Algorithm>(new Dql(static_cast<const DqlConfig&>(c), g, p, d));
    },
    dql_stacks,
    [](const std::string& phase, const std::vector<StackMember>& members) {
      return std::unique_ptr<StackedSteps>(new DqlStack(phase, members));
    }};

}  // namespace modiff::agents
