// EDP (Kang, Ma, Du, Pang, Yan 2023, "Efficient Diffusion Policies for Offline Reinforcement Learning"; official
// code sail-sg/edp, whose diffusion/ lives on in yueyang130/SEEM: dql.py, trainer.py, hps.py). Diffusion-QL's
// policy improvement without its sampling chain: the TD3-style term acts on the one-step estimate of the clean
// action from the BC pass's noised data action, a0_hat = (a_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), so a
// step costs one denoiser pass with gradients instead of a chain of T = 100; samples come from the
// probability-flow ODE in 15 passes (DPM-Solver, Ddpm::solve_ode). Per joint step, as the official code: both
// gradients from the parameters before the step (the critic's target from the target policy's next action, the
// policy's term through the online critics), then the critic's update, the policy's, the targets.
#include "algos/algorithm.h"
#include "algos/stacked_steps.h"
#include "modiff/common/error.h"

namespace modiff::agents {

// EDP's numbers: the fields of AlgorithmConfig and the weights of the policy loss's two terms.
struct EdpConfig : AlgorithmConfig {
  std::string objective;       // td3 | iql (advantage-weighted regression of a0_hat) | crr
  double alpha = 0;            // weight of the normalized TD3 term
  double awr_temperature = 0;  // iql: the weights exp((Q - V) x this), at most 100
  int crr_samples = 0;         // crr: actions around a0_hat whose mean Q is the baseline of the advantage
  double crr_beta = 0;         // crr: the weights exp(advantage / this) ...
  double crr_max_weight = 0;   // ... at most this
  std::string crr_weight;      // crr: exp | binary (advantage > 0)
  double diff_coef = 0;        // weight of the behavior-cloning term
  void describe(Hyperparameters& h, const std::string& dataset) override;
};

namespace {

const std::string kEdpSource = "EDP dql.py";
const std::string kEdpTrainer = "EDP trainer.py";

// EDP's weight of the BC term per locomotion dataset (hps.py diff_coef): 0 on halfcheetah medium and
// medium-replay, 10 on hopper medium-expert, 1 elsewhere.
double diff_coef_for(const std::string& dataset) {
  const bool halfcheetah = dataset.find("halfcheetah") != std::string::npos;
  if (halfcheetah && dataset.find("medium-expert") == std::string::npos && dataset.find("medium") != std::string::npos)
    return 0.0;
  if (dataset.find("hopper") != std::string::npos && dataset.find("medium-expert") != std::string::npos) return 10.0;
  return 1.0;
}

}  // namespace

void EdpConfig::describe(Hyperparameters& h, const std::string& dataset) {
  auto& p = policy;
  const std::string& src = kEdpSource;
  h.number("batch", batch, 256, "[1, 1048576]", kEdpTrainer + ": batch_size");
  h.flag("normalize_obs", normalize_obs, false, kEdpTrainer + ": obs_norm False");
  h.choice("policy.denoiser", p.denoiser.kind, "mlp", {"mlp", "ln-resnet"}, kEdpTrainer + ": policy_arch 256-256-256");
  h.number("policy.hidden", p.denoiser.hidden, 256, "[1, 65536]", kEdpTrainer + ": policy_arch 256-256-256");
  h.number("policy.blocks", p.denoiser.blocks, 3, "[1, 64]", kEdpTrainer + ": policy_arch 256-256-256");
  h.number("policy.block_width", p.denoiser.block_width, 1024, "[1, 65536]", "unused by the MLP (ln-resnet only)");
  h.number("policy.dropout", p.denoiser.dropout, 0.0, "[0, 1)", kEdpTrainer + ": an MLP without dropout");
  h.number("policy.time_dim", p.denoiser.time_dim, 16, "[2, 65536]", src + ": time_embed_size");
  h.activation("policy.activation", p.denoiser.activation, Activation::Mish, kEdpTrainer + ": activation mish");
  h.choice("policy.noise_schedule", p.diffusion.schedule, "linear", {"vp", "cosine", "linear"},
           src + ": schedule_name");
  h.number("policy.diffusion_steps", p.diffusion.steps, 100, "[1, 1000]", src + ": num_timesteps");
  h.choice("policy.sampler", p.diffusion.sampler, "dpm-solver", {"dpm-solver", "posterior", "eps-clip"},
           "EDP paper: DPM-Solver (the code's default sample_method is the DDPM chain: posterior)");
  h.number("policy.solver_passes", p.diffusion.solver_passes, 15, "[1, 1000]", src + ": dpm_steps");
  h.choice("policy.loss", p.diffusion.loss, "mean", {"sum", "mean"}, "EDP diffusion.py: LossType.MSE");
  h.number("policy.lr", p.adam.lr, 3e-4, "(0, 1]", src + ": lr");
  h.flag("policy.lr_cosine", policy_lr_cosine, false, src + ": lr_decay False");
  h.number("policy.beta1", p.adam.beta1, 0.9, "[0, 1)", "optax.adamw default");
  h.number("policy.beta2", p.adam.beta2, 0.999, "[0, 1)", "optax.adamw default");
  h.number("policy.eps", p.adam.eps, 1e-8, "(0, 1]", "optax.adamw default");
  h.number("policy.weight_decay", p.adam.weight_decay, 0.0, "[0, 1]", src + ": the policy's adamw, weight_decay 0");
  h.number("policy.max_grad_norm", p.adam.max_grad_norm, diffusion_ql_grad_norm(dataset), "[0, 1e6]",
           std::string("EDP hps.py gn, as ") + kDiffusionQlGradNormSource);
  h.number("policy.ema_rate", p.ema_rate, 0.005, "(0, 1]", src + ": tau of the target policy");
  h.number("policy.ema_start", p.ema_start, 0L, "[0, 1000000000]", src + ": from the first step");
  h.number("policy.ema_every", p.ema_every, 5, "[1, 1000000]", src + ": policy_tgt_freq");
  h.flag("policy.sample_with_ema", p.sample_with_ema, false, kEdpTrainer + ": evaluates with train_params");
  h.number("policy.candidates", p.candidates, 50, "[1, 4096]", kEdpTrainer + ": SamplerPolicy num_samples");
  h.choice("policy.select", p.select, "softmax", {"argmax", "softmax", "expectile"},
           kEdpTrainer + ": categorical over min Q (temperature 1)");
  h.choice("objective", objective, "td3", {"td3", "iql", "crr"},
           src + ": loss_type TD3 (IQL: advantage-weighted regression, with a guidance that has V; CRR)");
  h.number("alpha", alpha, 2.0, "[0, 1e6]", src + ": alpha, the TD3 term's weight");
  h.number("awr_temperature", awr_temperature, 3.0, "[0, 1e6]", src + ": awr_temperature (iql objective)");
  h.number("crr_samples", crr_samples, 20, "[1, 4096]", src + ": sample_actions (crr objective)");
  h.number("crr_beta", crr_beta, 1.0, "(0, 1e6]", src + ": crr_beta");
  h.number("crr_max_weight", crr_max_weight, 20.0, "(0, 1e6]", src + ": crr_ratio_upper_bound");
  h.choice("crr_weight", crr_weight, "exp", {"exp", "binary"}, src + ": crr_fn exp (binary: heaviside)");
  h.number("diff_coef", diff_coef, diff_coef_for(dataset), "[0, 1e6]",
           "EDP hps.py diff_coef: 0 halfcheetah medium and medium-replay, 10 hopper medium-expert, 1 elsewhere");
}

namespace {

class Edp : public Algorithm {
 public:
  Edp(const EdpConfig& config, GuidanceModule& g, DiffusionModel& p, const OfflineData& d)
      : Algorithm(g, p, d), config_(config) {
    if (config.objective == "iql" && !g.has_v())
      throw Error("edp's iql objective weighs actions by Q - V: it needs a guidance with V(s) (--guidance-kind iql), "
                  "got " + g.config().kind);
  }

  StepMetrics joint_step(const Batch& batch) override {
    // The target policy's next action, before this step (an IQL critic bootstraps from V instead).
    const auto next_action = guidance_.has_v() ? batch.next_act : policy_.sample_ema(batch.next_obs);
    StepMetrics m = policy_backward(batch);  // through the critics before their update
    const GuidanceMetrics g = guidance_.update(batch, next_action);
    policy_.optimizer_step();
    m.critic_loss = g.critic_loss;
    m.q_mean = g.q_mean;
    m.q_std = g.q_std;
    return m;
  }

  StepMetrics diffusion_step(const Batch& batch) override {
    StepMetrics m = policy_backward(batch);
    policy_.optimizer_step();
    return m;
  }

 private:
  // diff_coef BC + the improvement term on a0_hat, backward into the policy's gradients (the critics' gradients
  // it leaves are cleared by their own update).
  StepMetrics policy_backward(const Batch& batch) {
    policy_.zero_grad();
    const Ddpm::Prediction bc = policy_.bc_prediction(batch.obs, batch.act);
    const auto q_loss = config_.objective == "iql"   ? weighted_regression(batch, bc.x0_estimate)
                        : config_.objective == "crr" ? crr_term(batch, bc.x0_estimate)
                                                     : td3_term(batch, bc.x0_estimate);
    (config_.diff_coef * bc.loss + q_loss).backward();
    StepMetrics m;
    m.bc_loss = bc.loss.detach();
    m.q_loss = q_loss.detach();
    return m;
  }

  // alpha (-Q_i(s, a0_hat).mean() / |Q_i(s, a0_hat)|.mean()), one critic chosen by a coin drawn on the device.
  torch::Tensor td3_term(const Batch& batch, const torch::Tensor& a0_hat) {
    auto [q1, q2] = guidance_.policy_q(batch.obs, a0_hat);
    const auto coin = torch::rand({}, q1.options()) > 0.5;
    return config_.alpha * torch::where(coin, -q1.mean() / q1.abs().mean().detach(), -q2.mean() / q2.abs().mean().detach());
  }

  // IQL's advantage-weighted regression of a0_hat on the data action: weights w = min(exp((min target Q(s, a) -
  // V(s)) x awr_temperature), 100), constant (the official IQL loss, fixed std).
  torch::Tensor weighted_regression(const Batch& batch, const torch::Tensor& a0_hat) {
    torch::Tensor weight;
    {
      torch::NoGradGuard no_grad;
      weight = torch::clamp_max(torch::exp((guidance_.q_min(batch.obs, batch.act) - guidance_.v(batch.obs)) *
                                           config_.awr_temperature), 100.0);
    }
    return weighted_log_likelihood(weight, batch.act, a0_hat);
  }

  // CRR (the official _train_step_crr with its defaults: a fixed-std action distribution around a0_hat, the
  // mean as the baseline): the advantage of the data action A = min Q(s, a) - mean_j min Q(s, a0_hat + e_j),
  // e_j ~ N(0, I) for j = 1..crr_samples, through the critics a policy's loss goes through (the online ones
  // while they train, before their update; the frozen guidance's after); weights min(exp(A / crr_beta),
  // crr_max_weight), or A > 0, constant.
  torch::Tensor crr_term(const Batch& batch, const torch::Tensor& a0_hat) {
    torch::Tensor weight;
    {
      torch::NoGradGuard no_grad;
      const long n = config_.crr_samples, rows = a0_hat.size(0), act_dim = a0_hat.size(1);
      const auto around = a0_hat.unsqueeze(0) + torch::randn({n, rows, act_dim}, a0_hat.options());
      const auto repeated_obs = batch.obs.unsqueeze(0).expand({n, rows, batch.obs.size(1)}).reshape({n * rows, -1});
      const auto [v1, v2] = guidance_.policy_q(repeated_obs, around.reshape({n * rows, act_dim}));
      const auto baseline = torch::min(v1, v2).view({n, rows, 1}).mean(0);
      const auto [q1, q2] = guidance_.policy_q(batch.obs, batch.act);
      const auto advantage = torch::min(q1, q2) - baseline;
      weight = config_.crr_weight == "binary" ? (advantage > 0).to(advantage.scalar_type())
                                               : torch::clamp_max(torch::exp(advantage / config_.crr_beta),
                                                                  config_.crr_max_weight);
    }
    return weighted_log_likelihood(weight, batch.act, a0_hat);
  }

  // -(w log N(a; a0_hat, I)).mean() without log N's constant (the same gradient), w [B, 1] constant.
  static torch::Tensor weighted_log_likelihood(const torch::Tensor& weight, const torch::Tensor& act,
                                               const torch::Tensor& a0_hat) {
    const auto log_prob = (act - a0_hat).pow(2).sum(1, true) * -0.5;
    return -(weight * log_prob).mean();
  }

  const EdpConfig config_;
};

// EDP's joint and diffusion phases with the TD3 objective for a stack of runs: Edp::joint_step and
// Edp::diffusion_step over [K, B, ...] tensors, in the same order (the policies' gradients through the critics
// before the critics' update).
class EdpStack : public StepByStep {
 public:
  EdpStack(const std::string& phase, const std::vector<StackMember>& members)
      : StepByStep(members), config_(static_cast<const EdpConfig&>(*members.front().config)), policy_(members_) {
    if (phase == "joint") critic_.emplace(members_);
    else frozen_.emplace(members_);
  }

 private:
  StepMetrics step(const Batch& b) override {
    const auto d = draws(b);
    const size_t first = critic_ ? 1 : 0;  // d: [next-action noise,] steps, noise, coin
    torch::Tensor next_action;
    if (critic_) next_action = policy_.sample_ema(b.next_obs, d[0]);
    const Ddpm::Prediction bc = policy_.bc_prediction(b, d[first], d[first + 1]);
    const auto [q1, q2] = critic_ ? critic_->policy_q(b.obs, bc.x0_estimate) : frozen_->policy_q(b.obs, bc.x0_estimate);
    auto mean = [](const torch::Tensor& t) { return t.mean({1, 2}); };
    const auto q_loss = config_.alpha * torch::where(d[first + 2] > 0.5, -mean(q1) / mean(q1.abs()).detach(),
                                                     -mean(q2) / mean(q2.abs()).detach());
    policy_.backward(config_.diff_coef * bc.loss + q_loss);
    StepMetrics m = critic_ ? guidance_step_metrics(critic_->update(b, next_action)) : StepMetrics();
    policy_.optimizer_steps();
    m.bc_loss = bc.loss.detach();
    m.q_loss = q_loss.detach();
    return m;
  }

  // Each run's draws in the order its own step makes them: the target policy's sample, the BC pass's steps and
  // noise, the coin.
  std::vector<torch::Tensor> draws(const Batch& b) const {
    const long batch = b.act.size(1), act_dim = b.act.size(2);
    const auto options = b.act.options();
    return stacked_draws(members_, [&] {
      std::vector<torch::Tensor> drawn;
      if (critic_) drawn.push_back(draw_sampling_noise(policy_.ddpm(), batch, act_dim, options));
      for (const auto& t : draw_noising(policy_.ddpm().config().steps, batch, act_dim, options)) drawn.push_back(t);
      drawn.push_back(torch::rand({}, options));
      return drawn;
    });
  }

  const EdpConfig& config_;
  MlpPolicyStack policy_;
  std::optional<TdCriticStack> critic_;       // joint: twin-q critics trained beside the policies
  std::optional<FrozenCriticStack> frozen_;  // diffusion: the frozen guidance's target critics
};

// The TD3 objective over the MLP denoiser without a condition; in the joint phase beside twin-q critics (an IQL
// critic's joint update takes the data's next action, and its objective weighs by V: those runs take their own
// steps).
bool edp_stacks(const std::string& phase, const AlgorithmConfig& c, torch::Device) {
  const auto& edp = static_cast<const EdpConfig&>(c);
  return edp.objective == "td3" && c.policy.denoiser.kind == "mlp" && c.policy.denoiser.cond_dim == 0 &&
         (phase == "diffusion" || c.guidance.kind == "twin-q");
}

}  // namespace

extern const AlgorithmEntry kEdp = {
    "edp", "twin-q", [] { return std::unique_ptr<AlgorithmConfig>(new EdpConfig); },
    [](const AlgorithmConfig& c, GuidanceModule& g, DiffusionModel& p, const OfflineData& d) {
      return std::unique_ptr<Algorithm>(new Edp(static_cast<const EdpConfig&>(c), g, p, d));
    },
    edp_stacks,
    [](const std::string& phase, const std::vector<StackMember>& members) {
      return std::unique_ptr<StackedSteps>(new EdpStack(phase, members));
    }};

}  // namespace modiff::agents
