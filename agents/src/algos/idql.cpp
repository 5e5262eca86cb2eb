// IDQL (Hansen-Estruch et al. 2023; philippe-eecs/IDQL, jaxrl5/agents/ddpm_iql_simple): the
// diffusion policy is pure behavior cloning; the IQL critic is trained beside
// it from the data and only used at inference to pick among candidates. Each
// joint step: actor update, then V, then Q.
#include "algos/algorithm.h"
#include "algos/stacked_steps.h"
#include "ops/ln_resnet_block.h"
#include "runtime/cuda_support.h"

namespace modiff::agents {

// IDQL's numbers: the fields of AlgorithmConfig, all set by describe.
struct IdqlConfig : AlgorithmConfig {
  void describe(Hyperparameters& h, const std::string& dataset) override;
};

namespace {
const std::string kIdqlSource = "IDQL ddpm_iql_simple";
}  // namespace

// The diffusion policy as IDQL trains it (also the base of cfg's, cfg.cpp).
void describe_idql_policy(Hyperparameters& h, AlgorithmConfig& c) {
  auto& p = c.policy;
  const std::string& src = kIdqlSource;
  h.number("batch", c.batch, 512, "[1, 1048576]", src + ": batch_size");
  h.flag("normalize_obs", c.normalize_obs, false, src + ": raw observations");
  h.choice("policy.denoiser", p.denoiser.kind, "ln-resnet", {"ln-resnet", "mlp"}, src + ": LN-ResNet actor");
  h.number("policy.hidden", p.denoiser.hidden, 256, "[1, 65536]", src + ": hidden_dim");
  h.number("policy.blocks", p.denoiser.blocks, 3, "[1, 64]", src + ": num_blocks");
  h.number("policy.block_width", p.denoiser.block_width, 1024, "[1, 65536]", src + ": 4 x hidden_dim inside a block");
  h.number("policy.dropout", p.denoiser.dropout, 0.1, "[0, 1)", src + ": dropout_rate");
  h.number("policy.time_dim", p.denoiser.time_dim, 128, "[2, 65536]", src + ": learnable Fourier features");
  h.activation("policy.activation", p.denoiser.activation, Activation::Silu, src + ": swish");
  h.choice("policy.noise_schedule", p.diffusion.schedule, "vp", {"vp", "cosine", "linear"}, src + ": beta_schedule vp");
  h.number("policy.diffusion_steps", p.diffusion.steps, 5, "[1, 1000]", src + ": T");
  h.choice("policy.sampler", p.diffusion.sampler, "eps-clip", {"eps-clip", "posterior"}, src + ": clip x to [-1, 1] each step");
  h.choice("policy.loss", p.diffusion.loss, "sum", {"sum", "mean"}, src + ": squared error summed over action dims");
  h.number("policy.lr", p.adam.lr, 3e-4, "(0, 1]", src + ": actor_lr");
  h.flag("policy.lr_cosine", c.policy_lr_cosine, true, src + ": cosine decay over the run");
  h.number("policy.beta1", p.adam.beta1, 0.9, "[0, 1)", "optax.adamw default");
  h.number("policy.beta2", p.adam.beta2, 0.999, "[0, 1)", "optax.adamw default");
  h.number("policy.eps", p.adam.eps, 1e-8, "(0, 1]", "optax.adamw default");
  h.number("policy.weight_decay", p.adam.weight_decay, 1e-4, "[0, 1]", "optax.adamw default, which IDQL keeps");
  h.number("policy.max_grad_norm", p.adam.max_grad_norm, 0.0, "[0, 1e6]", src + ": no clipping (0)");
  h.number("policy.ema_rate", p.ema_rate, 0.001, "(0, 1]", src + ": ema_update 0.001 per step");
  h.number("policy.ema_start", p.ema_start, 0L, "[0, 1000000000]", src + ": from the first step");
  h.number("policy.ema_every", p.ema_every, 1, "[1, 1000000]", src + ": every step");
  h.flag("policy.sample_with_ema", p.sample_with_ema, true, src + ": samples from the EMA actor");
  h.number("policy.candidates", p.candidates, 64, "[1, 4096]", src + ": N = 64 at inference");
  h.choice("policy.select", p.select, "argmax", {"argmax", "softmax", "expectile"}, src + ": argmax of min target Q");
}

void IdqlConfig::describe(Hyperparameters& h, const std::string&) { describe_idql_policy(h, *this); }

// The IQL critic as IDQL trains it: twin Q and V (256, 256, ReLU), V with a LayerNorm on its input.
void describe_iql_guidance(Hyperparameters& h, AlgorithmConfig& c, const std::string&) {
  auto& g = c.guidance;
  const std::string& src = kIdqlSource;
  g.kind = "iql";
  h.number("guidance.hidden", g.hidden, 256, "[1, 65536]", src + ": critic hidden_dims (256, 256)");
  h.number("guidance.layers", g.layers, 2, "[1, 64]", src + ": critic hidden_dims (256, 256)");
  h.activation("guidance.activation", g.activation, Activation::Relu, src + ": relu");
  h.number("guidance.discount", g.discount, 0.99, "[0, 1]", src + ": discount");
  h.number("guidance.tau", g.tau, 0.005, "(0, 1]", src + ": target Polyak rate every step");
  h.number("guidance.expectile", g.expectile, 0.7, "(0, 1)", src + ": expectile (locomotion)");
  h.number("guidance.lr", g.lr, 3e-4, "(0, 1]", src + ": critic_lr, value_lr");
  h.flag("guidance.lr_cosine", c.guidance_lr_cosine, false, src + ": constant critic learning rate");
  h.number("guidance.max_grad_norm", g.max_grad_norm, 0.0, "[0, 1e6]", src + ": no clipping (0)");
  h.flag("guidance.scale_rewards", g.scale_rewards, true, src + ": r x 1000 / (max - min episode return)");
}

namespace {

class Idql : public Algorithm {
 public:
  using Algorithm::Algorithm;

  StepMetrics joint_step(const Batch& batch) override { return joint_steps({batch}).front(); }

  // Four steps per graph let the two chains run apart (2,760 -> 2,829 joint steps/s on the H200,
  // docs/benchmarks.md); Diffusion-QL's steps measured slower captured together, so the default stays 1.
  int graph_steps() const override { return 4; }

  // The two updates share only the batches: on CUDA the diffusion's steps and the critic's steps run
  // as two parallel chains, which meet only at the end (no join after every step, so either chain's
  // next step fills the gaps the other leaves). The same updates as one step after the other.
  std::vector<StepMetrics> joint_steps(const std::vector<Batch>& batches) override {
    std::vector<torch::Tensor> bc(batches.size());
    std::vector<StepMetrics> m(batches.size());
    concurrently({[&] { for (size_t k = 0; k < batches.size(); ++k) bc[k] = bc_update(batches[k]); },
                  [&] { for (size_t k = 0; k < batches.size(); ++k) m[k] = guidance_step(batches[k]); }});
    for (size_t k = 0; k < batches.size(); ++k) m[k].bc_loss = bc[k];
    return m;
  }

  StepMetrics diffusion_step(const Batch& batch) override {
    StepMetrics m;
    m.bc_loss = bc_update(batch);
    return m;
  }
};

// IDQL's joint and diffusion phases for a stack: the policies' behavior cloning, and in the joint phase the
// guidance beside it as a parallel chain (as Idql::joint_steps runs them).
class IdqlStack : public StackedSteps {
 public:
  IdqlStack(const std::string& phase, const std::vector<StackMember>& members) : members_(members), bc_(members_) {
    if (phase == "joint") guidance_.emplace(members_);
  }

  std::vector<std::vector<StepMetrics>> steps(int count) override {
    const auto batches = stacked_batches(members_, count);
    std::vector<torch::Tensor> bc(batches.size());
    std::vector<StepMetrics> m(batches.size());
    auto bc_chain = [&] {
      for (size_t s = 0; s < batches.size(); ++s) bc[s] = bc_.update(batches[s]);
    };
    if (guidance_) {
      run_concurrently(members_.front().data->device, {bc_chain, [&] {
                                                         for (size_t s = 0; s < batches.size(); ++s)
                                                           m[s] = guidance_->update(batches[s]);
                                                       }});
    } else {
      bc_chain();
    }
    for (size_t s = 0; s < batches.size(); ++s) m[s].bc_loss = bc[s];
    return per_member(m, members_.size());
  }

 private:
  const std::vector<StackMember> members_;
  LnResnetBcStack bc_;
  std::optional<GuidanceStack> guidance_;
};

// The LN-ResNet policy without a condition, its dropout drawn as the stack draws it: the runs' own blocks draw it
// as the fused blocks do (one uniform per element); LibTorch's Dropout modules, where the fused blocks are not
// built, draw otherwise.
bool idql_stacks(const std::string&, const AlgorithmConfig& c, torch::Device device) {
  const auto& d = c.policy.denoiser;
  const bool same_dropout_draws =
      d.dropout == 0 || (Kernels::for_device(device).own && fused_ln_resnet_block_supports(d.hidden));
  return d.kind == "ln-resnet" && d.cond_dim == 0 && d.blocks > 0 && same_dropout_draws;
}

}  // namespace

extern const AlgorithmEntry kIdql = {
    "idql", "iql", [] { return std::unique_ptr<AlgorithmConfig>(new IdqlConfig); },
    [](const AlgorithmConfig&, GuidanceModule& g, DiffusionModel& p, const OfflineData& d) {
      return std::unique_ptr<Algorithm>(new Idql(g, p, d));
    },
    idql_stacks,
    [](const std::string& phase, const std::vector<StackMember>& members) {
      return std::unique_ptr<StackedSteps>(new IdqlStack(phase, members));
    }};

}  // namespace modiff::agents
