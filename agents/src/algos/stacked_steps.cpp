// IDQL's steps for a stack of runs: the behavior-cloning update of K LN-ResNet policies and the IQL update of
// K critics, each over [K, B, ...] tensors, in the order of the run's own steps (algos/idql.cpp,
// modules/guidance_iql.cpp, nets/diffusion.cpp's loss).
#include "algos/stacked_steps.h"

#include <optional>

#include "modiff/common/error.h"
#include "nets/denoisers.h"
#include "nets/stacked.h"
#include "ops/ln_resnet_block.h"
#include "runtime/cuda_support.h"

namespace modiff::agents {

namespace {

long stack_size(const std::vector<StackMember>& members) { return static_cast<long>(members.size()); }

// Each member's batches for `count` steps, drawn from its own stream as its trainer draws them (a graph's
// batches before its steps), gathered as [K, B, ...] columns: one gather where all runs share one dataset.
std::vector<Batch> draw_batches(const std::vector<StackMember>& members, int count) {
  std::vector<std::vector<torch::Tensor>> index(static_cast<size_t>(count));
  for (const auto& m : members) {
    const RunContext::Draws draws(*m.context);
    for (auto& step : index) step.push_back(m.data->sample_index(m.batch));
  }
  bool one_dataset = true;
  for (const auto& m : members) one_dataset = one_dataset && m.data == members.front().data;
  std::vector<Batch> batches;
  for (const auto& step : index) {
    torch::Tensor table;
    if (one_dataset) {
      table = members.front().data->table().index_select(0, torch::cat(step)).view({stack_size(members), -1,
                                                                                   members.front().data->table().size(1)});
    } else {
      std::vector<torch::Tensor> tables;
      for (size_t k = 0; k < members.size(); ++k) tables.push_back(members[k].data->table().index_select(0, step[k]));
      table = torch::stack(tables);
    }
    batches.push_back(members.front().data->columns(table));
  }
  return batches;
}

// obs [K, B, obs] through each run's normalizer (none where every run's is the identity).
torch::Tensor normalized(const std::vector<const Normalizer*>& normalizers, const torch::Tensor& obs) {
  bool identity = true;
  for (const auto* n : normalizers) identity = identity && n->is_identity;
  if (identity) return obs;
  std::vector<torch::Tensor> rows;
  for (size_t k = 0; k < normalizers.size(); ++k) rows.push_back(normalizers[k]->apply(obs[static_cast<long>(k)]));
  return torch::stack(rows);
}

// The behavior-cloning update of K LN-ResNet policies (Algorithm::bc_update with Ddpm's loss).
class BcStack {
 public:
  explicit BcStack(const std::vector<StackMember>& members) : members_(members), params_(runs(members)) {
    net_ = dynamic_cast<const LnResnetDenoiser*>(members.front().policy->trained_parts().net);
    if (net_ == nullptr) throw Error("internal: stacked behavior cloning of a denoiser other than the LN-ResNet");
    dropout_ = net_->dropouts.empty() ? 0.0 : net_->dropouts.front()->options.p();
    for (const auto& m : members) normalizers_.push_back(&m.policy->normalizer());
  }

  // One update of every policy from its batch ([K, B, ...]): the K losses.
  torch::Tensor update(const Batch& b) {
    const Draws d = draw(b.act.size(1), b.act.size(2), b.act.options());
    const auto& ddpm = members_.front().policy->ddpm();
    auto rows = ddpm.noising().index_select(0, d.step.flatten()).view({stack_size(members_), -1, 2});
    auto x_t = torch::addcmul(rows.narrow(2, 0, 1) * b.act, rows.narrow(2, 1, 1), d.noise);
    auto eps = stacked_ln_resnet(*net_, params_, x_t, d.step.unsqueeze(2).to(b.act.scalar_type()),
                                 normalized(normalizers_, b.obs), d.uniforms, dropout_);
    auto error = (eps - d.noise).pow(2);
    auto loss = ddpm.config().loss == "sum" ? error.sum(2).mean(1) : error.mean({1, 2});
    params_.backward(loss.sum());
    for (const auto& m : members_) m.policy->optimizer_step();
    return loss.detach();
  }

 private:
  struct Draws {
    torch::Tensor step, noise, uniforms;  // [K, B] step indices, [K, B, act] noise, [K, blocks, B, hidden]
  };

  static std::vector<StackedParams::Run> runs(const std::vector<StackMember>& members) {
    std::vector<StackedParams::Run> r;
    for (const auto& m : members) {
      auto parts = m.policy->trained_parts();
      r.push_back({parts.net, parts.params});
    }
    return r;
  }

  // Each run's draws in the order of its own loss: the steps, the noise, then the blocks' dropout draws
  // (nets/diffusion.cpp's fast_loss, nets/fast_denoisers.cpp's first_layer_data).
  Draws draw(long batch, long act_dim, const torch::TensorOptions& options) const {
    const bool dropout = net_->is_training() && dropout_ > 0;
    const long steps = members_.front().policy->ddpm().config().steps;
    std::vector<torch::Tensor> step, noise, uniforms;
    for (const auto& m : members_) {
      const RunContext::Draws draws(*m.context);
      step.push_back(torch::randint(steps, {batch}, options.dtype(torch::kLong)));
      noise.push_back(torch::randn({batch, act_dim}, options));
      if (dropout)
        uniforms.push_back(torch::rand({static_cast<long>(net_->norms.size()), batch, net_->input->weight.size(0)}, options));
    }
    return {torch::stack(step), torch::stack(noise), dropout ? torch::stack(uniforms) : torch::Tensor()};
  }

  const std::vector<StackMember>& members_;
  StackedParams params_;
  const LnResnetDenoiser* net_ = nullptr;
  double dropout_ = 0;
  std::vector<const Normalizer*> normalizers_;
};

// The IQL update of K critics (GuidanceModule::update_iql): V by expectile regression on the minimum target Q,
// Q on r + gamma (1 - terminal) V(s'), then the Polyak-averaged targets.
class IqlStack {
 public:
  struct Outcome {
    torch::Tensor critic_loss, value_loss, q_mean, q_std;  // [K] each
  };

  explicit IqlStack(const std::vector<StackMember>& members)
      : members_(members),
        first_(members.front().guidance->trained_parts()),
        q_(runs(members, &GuidanceModule::TrainedParts::q, &GuidanceModule::TrainedParts::q_params)),
        q_target_(runs(members, &GuidanceModule::TrainedParts::q_target, &GuidanceModule::TrainedParts::q_target_params)),
        v_(runs(members, &GuidanceModule::TrainedParts::v, &GuidanceModule::TrainedParts::v_params)),
        config_(members.front().guidance->config()) {
    std::vector<double> scales;
    for (const auto& m : members) {
      scales.push_back(m.guidance->reward_scale());
      normalizers_.push_back(&m.guidance->normalizer());
    }
    reward_scale_ = torch::tensor(scales, torch::TensorOptions().dtype(torch::kFloat64))
                        .to(q_.values().options())
                        .view({stack_size(members), 1, 1});
  }

  Outcome update(const Batch& b) {
    const auto obs = normalized(normalizers_, b.obs), next_obs = normalized(normalizers_, b.next_obs);
    const auto obs_act = torch::cat({obs, b.act}, 2);
    torch::Tensor q_min;
    {
      torch::NoGradGuard no_grad;
      auto q_target = stacked_twin_q(*first_.q_target, q_target_, obs_act);
      q_min = torch::min(q_target.first, q_target.second);
    }
    const auto diff = q_min - stacked_mlp(*first_.v, v_, obs);
    const auto weight = torch::where(diff > 0, torch::full_like(diff, config_.expectile),
                                     torch::full_like(diff, 1 - config_.expectile));
    const auto value_loss = (weight * diff.pow(2)).mean({1, 2});
    v_.backward(value_loss.sum());
    for (const auto& m : members_) m.guidance->trained_parts().v_optimizer->step();

    torch::Tensor v_next;
    {
      torch::NoGradGuard no_grad;
      v_next = stacked_mlp(*first_.v, v_, next_obs);
    }
    const auto q = stacked_twin_q(*first_.q, q_, obs_act);
    const auto target = b.reward * reward_scale_ + config_.discount * b.not_done * v_next;
    const auto critic_loss = ((q.first - target).pow(2) + (q.second - target).pow(2)).mean({1, 2});
    q_.backward(critic_loss.sum());
    for (const auto& m : members_) m.guidance->trained_parts().q_optimizer->step();
    {
      torch::NoGradGuard no_grad;
      q_target_.values().lerp_(q_.values(), config_.tau);
    }
    const auto flat = q_min.flatten(1);
    return {critic_loss.detach(), value_loss.detach(), flat.mean(1), torch::std(flat, {1}, true, false)};
  }

 private:
  template <typename Net>
  static std::vector<StackedParams::Run> runs(const std::vector<StackMember>& members,
                                              Net* GuidanceModule::TrainedParts::*net,
                                              FlatParams* GuidanceModule::TrainedParts::*params) {
    std::vector<StackedParams::Run> r;
    for (const auto& m : members) {
      auto parts = m.guidance->trained_parts();
      r.push_back({parts.*net, parts.*params});
    }
    return r;
  }

  const std::vector<StackMember>& members_;
  const GuidanceModule::TrainedParts first_;
  StackedParams q_, q_target_, v_;
  const GuidanceConfig config_;
  std::vector<const Normalizer*> normalizers_;
  torch::Tensor reward_scale_;  // [K, 1, 1]
};

// IDQL's phases for a stack: joint (the two updates as parallel chains, as algos/idql.cpp runs them),
// guidance (IQL alone) and diffusion (behavior cloning alone).
class IdqlStack : public StackedSteps {
 public:
  IdqlStack(const std::string& phase, const std::vector<StackMember>& members) : phase_(phase), members_(members) {
    if (phase != "guidance") bc_.emplace(members_);
    if (phase != "diffusion") iql_.emplace(members_);
  }

  std::vector<std::vector<StepMetrics>> steps(int count) override {
    const auto batches = draw_batches(members_, count);
    std::vector<torch::Tensor> bc(batches.size());
    std::vector<IqlStack::Outcome> iql(batches.size());
    auto bc_chain = [&] {
      for (size_t s = 0; s < batches.size(); ++s) bc[s] = bc_->update(batches[s]);
    };
    auto iql_chain = [&] {
      for (size_t s = 0; s < batches.size(); ++s) iql[s] = iql_->update(batches[s]);
    };
    if (bc_ && iql_) run_concurrently(members_.front().data->device, {bc_chain, iql_chain});
    else if (bc_) bc_chain();
    else iql_chain();
    std::vector<std::vector<StepMetrics>> all(members_.size());
    for (size_t k = 0; k < members_.size(); ++k) {
      std::vector<StepMetrics>& metrics = all[k];
      metrics.resize(batches.size());
      const long row = static_cast<long>(k);
      for (size_t s = 0; s < batches.size(); ++s) {
        if (bc_) metrics[s].bc_loss = bc[s][row];
        if (!iql_) continue;
        metrics[s].critic_loss = iql[s].critic_loss[row];
        metrics[s].value_loss = iql[s].value_loss[row];
        metrics[s].q_mean = iql[s].q_mean[row];
        metrics[s].q_std = iql[s].q_std[row];
      }
    }
    return all;
  }

 private:
  const std::string phase_;
  const std::vector<StackMember> members_;
  std::optional<BcStack> bc_;
  std::optional<IqlStack> iql_;
};

}  // namespace

bool stacked_steps_exist(const std::string& algorithm, const std::string& phase, const DiffusionPolicyConfig& policy,
                         const GuidanceConfig& guidance, torch::Device device) {
  if (algorithm != "idql" || !device.is_cuda()) return false;
  if (phase != "diffusion" && guidance.kind != "iql") return false;
  if (phase == "guidance") return true;
  const auto& d = policy.denoiser;
  // The runs' own blocks draw their dropout as the fused blocks do (one uniform per element); LibTorch's
  // Dropout modules, where the fused blocks are not built, draw otherwise.
  const bool same_dropout_draws =
      d.dropout == 0 || (Kernels::for_device(device).own && fused_ln_resnet_block_supports(d.hidden));
  return d.kind == "ln-resnet" && d.cond_dim == 0 && d.blocks > 0 && same_dropout_draws;
}

std::unique_ptr<StackedSteps> make_stacked_steps(const std::string& algorithm, const std::string& phase,
                                                 const std::vector<StackMember>& members) {
  if (algorithm != "idql" || members.empty()) throw Error("internal: no stacked steps for " + algorithm);
  return std::make_unique<IdqlStack>(phase, members);
}

}  // namespace modiff::agents
