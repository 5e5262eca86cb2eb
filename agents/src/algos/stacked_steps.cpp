// The pieces of stacked steps and the guidance phase of every algorithm, stacked (modules/guidance_iql.cpp,
// modules/guidance_twin_q.cpp, nets/diffusion.cpp's loss and chain, each over [K, B, ...] tensors).
#include "algos/stacked_steps.h"

#include "modiff/common/error.h"
#include "nets/denoisers.h"

namespace modiff::agents {

namespace {

long stack_size(const std::vector<StackMember>& members) { return static_cast<long>(members.size()); }

// Row k of each defined field of stacked metrics.
StepMetrics member_row(const StepMetrics& stacked, long k) {
  auto row = [k](const torch::Tensor& t) { return t.defined() ? t[k] : t; };
  return {row(stacked.bc_loss),    row(stacked.q_loss), row(stacked.critic_loss),
          row(stacked.value_loss), row(stacked.q_mean), row(stacked.q_std)};
}

template <typename Net>
std::vector<StackedParams::Run> guidance_runs(const std::vector<StackMember>& members,
                                              Net* GuidanceModule::TrainedParts::*net,
                                              FlatParams* GuidanceModule::TrainedParts::*params) {
  std::vector<StackedParams::Run> r;
  for (const auto& m : members) {
    auto parts = m.guidance->trained_parts();
    r.push_back({parts.*net, parts.*params});
  }
  return r;
}

std::vector<const Normalizer*> guidance_normalizers(const std::vector<StackMember>& members) {
  std::vector<const Normalizer*> n;
  for (const auto& m : members) n.push_back(&m.guidance->normalizer());
  return n;
}

std::vector<const Normalizer*> policy_normalizers(const std::vector<StackMember>& members) {
  std::vector<const Normalizer*> n;
  for (const auto& m : members) n.push_back(&m.policy->normalizer());
  return n;
}

// Each member's reward scale, [K, 1, 1].
torch::Tensor reward_scales(const std::vector<StackMember>& members, const torch::TensorOptions& options) {
  std::vector<double> scales;
  for (const auto& m : members) scales.push_back(m.guidance->reward_scale());
  return torch::tensor(scales, torch::TensorOptions().dtype(torch::kFloat64)).to(options).view({stack_size(members), 1, 1});
}

// The minimum of twin critics' outputs, its mean and (unbiased) standard deviation per run.
void record_q(GuidanceMetrics& m, const torch::Tensor& q_min) {
  const auto flat = q_min.detach().flatten(1);
  m.q_mean = flat.mean(1);
  m.q_std = torch::std(flat, {1}, true, false);
}

// Every algorithm's guidance phase.
class GuidancePhaseStack : public StepByStep {
 public:
  explicit GuidancePhaseStack(const std::vector<StackMember>& members) : StepByStep(members), guidance_(members_) {}

 private:
  StepMetrics step(const Batch& b) override { return guidance_.update(b); }
  GuidanceStack guidance_;
};

}  // namespace

std::vector<std::vector<StepMetrics>> StepByStep::steps(int count) {
  std::vector<StepMetrics> stacked;
  for (const auto& batch : stacked_batches(members_, count)) stacked.push_back(step(batch));
  return per_member(stacked, members_.size());
}

std::vector<std::vector<StepMetrics>> per_member(const std::vector<StepMetrics>& stacked, size_t members) {
  std::vector<std::vector<StepMetrics>> all(members);
  for (const auto& step : stacked)
    for (size_t k = 0; k < members; ++k) all[k].push_back(member_row(step, static_cast<long>(k)));
  return all;
}

std::vector<Batch> stacked_batches(const std::vector<StackMember>& members, int count) {
  std::vector<std::vector<torch::Tensor>> index(static_cast<size_t>(count));
  for (const auto& m : members) {
    const RunContext::Draws draws(*m.context);
    for (auto& step : index) step.push_back(m.data->sample_index(m.config->batch));
  }
  bool one_dataset = true;
  for (const auto& m : members) one_dataset = one_dataset && m.data == members.front().data;
  std::vector<Batch> batches;
  for (const auto& step : index) {
    torch::Tensor table;
    if (one_dataset) {
      // One gather where all runs share one dataset.
      const auto& all = members.front().data->table();
      table = all.index_select(0, torch::cat(step)).view({stack_size(members), -1, all.size(1)});
    } else {
      std::vector<torch::Tensor> tables;
      for (size_t k = 0; k < members.size(); ++k) tables.push_back(members[k].data->table().index_select(0, step[k]));
      table = torch::stack(tables);
    }
    batches.push_back(members.front().data->columns(table));
  }
  return batches;
}

std::vector<torch::Tensor> stacked_draws(const std::vector<StackMember>& members,
                                         const std::function<std::vector<torch::Tensor>()>& draw) {
  std::vector<std::vector<torch::Tensor>> slots;
  for (const auto& m : members) {
    const RunContext::Draws draws(*m.context);
    const auto drawn = draw();
    slots.resize(drawn.size());
    for (size_t i = 0; i < drawn.size(); ++i) slots[i].push_back(drawn[i]);
  }
  std::vector<torch::Tensor> stacked;
  for (const auto& slot : slots) stacked.push_back(torch::stack(slot));
  return stacked;
}

torch::Tensor draw_sampling_noise(const Ddpm& ddpm, long batch, long act_dim, const torch::TensorOptions& options) {
  const int draws = ddpm.config().sampler == "dpm-solver" ? 1 : ddpm.config().steps;
  std::vector<torch::Tensor> drawn;
  for (int i = 0; i < draws; ++i) drawn.push_back(torch::randn({batch, act_dim}, options));
  return torch::stack(drawn);
}

std::vector<torch::Tensor> draw_noising(int steps, long batch, long act_dim, const torch::TensorOptions& options) {
  auto step = torch::randint(steps, {batch}, options.dtype(torch::kLong));
  return {step, torch::randn({batch, act_dim}, options)};
}

torch::Tensor normalized(const std::vector<const Normalizer*>& normalizers, const torch::Tensor& obs) {
  bool identity = true;
  for (const auto* n : normalizers) identity = identity && n->is_identity;
  if (identity) return obs;
  std::vector<torch::Tensor> rows;
  for (size_t k = 0; k < normalizers.size(); ++k) rows.push_back(normalizers[k]->apply(obs[static_cast<long>(k)]));
  return torch::stack(rows);
}

torch::Tensor noise_prediction_loss(const Ddpm& ddpm, const torch::Tensor& eps, const torch::Tensor& noise) {
  const auto error = (eps - noise).pow(2);
  return ddpm.config().loss == "sum" ? error.sum(2).mean(1) : error.mean({1, 2});
}

torch::Tensor noising_rows(const Ddpm& ddpm, const torch::Tensor& step) {
  return ddpm.noising().index_select(0, step.flatten()).view({step.size(0), step.size(1), 2});
}

torch::Tensor noised_actions(const torch::Tensor& rows, const torch::Tensor& x0, const torch::Tensor& noise) {
  return torch::addcmul(rows.narrow(2, 0, 1) * x0, rows.narrow(2, 1, 1), noise);
}

// ---- Critics ----

TwinCritics::TwinCritics(const std::vector<StackMember>& members)
    : members_(members),
      first_(members.front().guidance->trained_parts()),
      q_(guidance_runs(members, &GuidanceModule::TrainedParts::q, &GuidanceModule::TrainedParts::q_params)),
      q_target_(guidance_runs(members, &GuidanceModule::TrainedParts::q_target,
                              &GuidanceModule::TrainedParts::q_target_params)),
      config_(members.front().guidance->config()),
      normalizers_(guidance_normalizers(members)),
      reward_scale_(reward_scales(members, q_.values().options())) {}

std::pair<torch::Tensor, torch::Tensor> TwinCritics::target_q(const torch::Tensor& obs_act) {
  torch::NoGradGuard no_grad;
  return stacked_twin_q(*first_.q_target, q_target_, obs_act);
}

std::pair<torch::Tensor, torch::Tensor> TwinCritics::policy_q(const torch::Tensor& obs_act) {
  return stacked_twin_q(*first_.q, q_, obs_act, /*param_grads=*/false);
}

TwinCritics::Regression TwinCritics::regress(const torch::Tensor& obs_act, const torch::Tensor& target) {
  const auto q = stacked_twin_q(*first_.q, q_, obs_act);
  const auto loss = (q.first - target).pow(2).mean({1, 2}) + (q.second - target).pow(2).mean({1, 2});
  q_.backward(loss.sum());
  for (const auto& m : members_) m.guidance->trained_parts().q_optimizer->step();
  {
    torch::NoGradGuard no_grad;
    q_target_.values().lerp_(q_.values(), config_.tau);
  }
  return {loss.detach(), q};
}

IqlCriticStack::IqlCriticStack(const std::vector<StackMember>& members)
    : members_(members),
      critics_(members),
      v_(guidance_runs(members, &GuidanceModule::TrainedParts::v, &GuidanceModule::TrainedParts::v_params)) {}

GuidanceMetrics IqlCriticStack::update(const Batch& b) {
  const auto obs = critics_.normalized_obs(b.obs), next_obs = critics_.normalized_obs(b.next_obs);
  const auto obs_act = torch::cat({obs, b.act}, 2);
  const auto target_q = critics_.target_q(obs_act);
  const auto q_min = torch::min(target_q.first, target_q.second);
  const auto& v_net = *critics_.first().v;
  const double expectile = critics_.config().expectile;
  const auto diff = q_min - stacked_mlp(v_net, v_, obs);
  const auto weight = torch::where(diff > 0, torch::full_like(diff, expectile), torch::full_like(diff, 1 - expectile));
  const auto value_loss = (weight * diff.pow(2)).mean({1, 2});
  v_.backward(value_loss.sum());
  for (const auto& m : members_) m.guidance->trained_parts().v_optimizer->step();

  torch::Tensor v_next;
  {
    torch::NoGradGuard no_grad;
    v_next = stacked_mlp(v_net, v_, next_obs);
  }
  const auto target = critics_.scaled_reward(b) + critics_.config().discount * b.not_done * v_next;
  GuidanceMetrics m;
  m.critic_loss = critics_.regress(obs_act, target).loss;
  m.value_loss = value_loss.detach();
  record_q(m, q_min);
  return m;
}

GuidanceMetrics TdCriticStack::update(const Batch& b, const torch::Tensor& next_action) {
  const auto obs = critics_.normalized_obs(b.obs), next_obs = critics_.normalized_obs(b.next_obs);
  const auto next_q = critics_.target_q(torch::cat({next_obs, next_action}, 2));
  const auto target = critics_.scaled_reward(b) +
                      critics_.config().discount * b.not_done * torch::min(next_q.first, next_q.second);
  const auto fit = critics_.regress(torch::cat({obs, b.act}, 2), target);
  GuidanceMetrics m;
  m.critic_loss = fit.loss;
  record_q(m, torch::min(fit.q.first, fit.q.second));
  return m;
}

namespace {
std::vector<StackedParams::Run> target_critic_runs(const std::vector<StackMember>& members) {
  std::vector<StackedParams::Run> r;
  for (const auto& m : members) {
    const auto critics = m.guidance->target_critics();
    r.push_back({critics.net, critics.params});
  }
  return r;
}
}  // namespace

FrozenCriticStack::FrozenCriticStack(const std::vector<StackMember>& members)
    : first_(members.front().guidance->target_critics().net),
      q_target_(target_critic_runs(members)),
      normalizers_(guidance_normalizers(members)) {
  for (const auto& m : members)
    if (!m.guidance->frozen()) throw Error("internal: the stacked critics of a guidance still training");
}

std::pair<torch::Tensor, torch::Tensor> FrozenCriticStack::policy_q(const torch::Tensor& obs, const torch::Tensor& act) {
  return stacked_twin_q(*first_, q_target_, torch::cat({normalized(normalizers_, obs), act}, 2));
}

GuidanceStack::GuidanceStack(const std::vector<StackMember>& members) {
  if (members.front().guidance->has_v()) iql_.emplace(members);
  else td_.emplace(members);
}

StepMetrics GuidanceStack::update(const Batch& b) {
  return guidance_step_metrics(iql_ ? iql_->update(b) : td_->update(b, b.next_act));
}

// ---- Policies ----

namespace {
std::vector<StackedParams::Run> policy_runs(const std::vector<StackMember>& members, bool ema) {
  std::vector<StackedParams::Run> r;
  for (const auto& m : members) {
    auto parts = m.policy->trained_parts();
    r.push_back(ema ? StackedParams::Run{parts.ema_net, parts.ema_params} : StackedParams::Run{parts.net, parts.params});
  }
  return r;
}
}  // namespace

MlpPolicyStack::MlpPolicyStack(const std::vector<StackMember>& members)
    : members_(members),
      params_(policy_runs(members, false), StackedParams::WeightUse::Repeated),
      ema_(policy_runs(members, true)),
      normalizers_(policy_normalizers(members)) {
  const auto parts = members.front().policy->trained_parts();
  net_ = dynamic_cast<const MlpDenoiser*>(parts.net);
  ema_net_ = dynamic_cast<const MlpDenoiser*>(parts.ema_net);
  if (net_ == nullptr || ema_net_ == nullptr) throw Error("internal: a stacked MLP policy over another denoiser");
}

torch::Tensor MlpPolicyStack::bc_loss(const Batch& b, const torch::Tensor& step, const torch::Tensor& noise) {
  const auto x_t = noised_actions(noising_rows(ddpm(), step), b.act, noise);
  const auto eps = stacked_mlp_denoiser(*net_, params_, x_t, step.unsqueeze(2).to(b.act.scalar_type()),
                                        normalized(normalizers_, b.obs));
  return noise_prediction_loss(ddpm(), eps, noise);
}

Ddpm::Prediction MlpPolicyStack::bc_prediction(const Batch& b, const torch::Tensor& step, const torch::Tensor& noise) {
  const auto rows = noising_rows(ddpm(), step);
  const auto x_t = noised_actions(rows, b.act, noise);
  const auto eps = stacked_mlp_denoiser(*net_, params_, x_t, step.unsqueeze(2).to(b.act.scalar_type()),
                                        normalized(normalizers_, b.obs));
  // (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), clipped, as nets/diffusion.cpp's clean_estimate.
  const auto x0 = torch::clamp((x_t - rows.narrow(2, 1, 1) * eps) / rows.narrow(2, 0, 1), -1.0, 1.0);
  return {noise_prediction_loss(ddpm(), eps, noise), x0};
}

torch::Tensor MlpPolicyStack::sample(const MlpDenoiser& first_run, StackedParams& params, const torch::Tensor& obs,
                                     const torch::Tensor& noise) {
  const auto& config = ddpm().config();
  const auto eps_of = stacked_mlp_chain(first_run, params, normalized(normalizers_, obs), config.steps);
  if (config.sampler == "dpm-solver") return ddpm().solve_ode(eps_of, config.solver_passes, noise.select(1, 0));
  long draw = 0;
  return ddpm().reverse_chain(eps_of, [&] { return noise.select(1, draw++); });
}

torch::Tensor MlpPolicyStack::sample_train(const torch::Tensor& obs, const torch::Tensor& noise) {
  return sample(*net_, params_, obs, noise);
}

torch::Tensor MlpPolicyStack::sample_ema(const torch::Tensor& obs, const torch::Tensor& noise) {
  torch::NoGradGuard no_grad;
  return sample(*ema_net_, ema_, obs, noise);
}

void MlpPolicyStack::backward(const torch::Tensor& losses) { params_.backward(losses.sum()); }

void MlpPolicyStack::optimizer_steps() {
  for (const auto& m : members_) m.policy->optimizer_step();
}

LnResnetBcStack::LnResnetBcStack(const std::vector<StackMember>& members)
    : members_(members), params_(policy_runs(members, false)), normalizers_(policy_normalizers(members)) {
  net_ = dynamic_cast<const LnResnetDenoiser*>(members.front().policy->trained_parts().net);
  if (net_ == nullptr) throw Error("internal: stacked behavior cloning of a denoiser other than the LN-ResNet");
  dropout_ = net_->dropouts.empty() ? 0.0 : net_->dropouts.front()->options.p();
}

torch::Tensor LnResnetBcStack::update(const Batch& b) {
  const long batch = b.act.size(1), act_dim = b.act.size(2);
  const bool dropout = net_->is_training() && dropout_ > 0;
  const int steps = members_.front().policy->ddpm().config().steps;
  // Each run's draws in the order of its own loss: the steps, the noise, then the blocks' dropout draws
  // (nets/diffusion.cpp's fast_loss, nets/fast_denoisers.cpp's first_layer_data).
  const auto d = stacked_draws(members_, [&] {
    auto drawn = draw_noising(steps, batch, act_dim, b.act.options());
    if (dropout)
      drawn.push_back(torch::rand({static_cast<long>(net_->norms.size()), batch, net_->input->weight.size(0)},
                                  b.act.options()));
    return drawn;
  });
  const auto& ddpm = members_.front().policy->ddpm();
  const auto x_t = noised_actions(noising_rows(ddpm, d[0]), b.act, d[1]);
  const auto eps = stacked_ln_resnet(*net_, params_, x_t, d[0].unsqueeze(2).to(b.act.scalar_type()),
                                     normalized(normalizers_, b.obs), dropout ? d[2] : torch::Tensor(), dropout_);
  const auto loss = noise_prediction_loss(ddpm, eps, d[1]);
  params_.backward(loss.sum());
  for (const auto& m : members_) m.policy->optimizer_step();
  return loss.detach();
}

// ---- Dispatch ----

bool stacked_steps_exist(const std::string& algorithm, const std::string& phase, const AlgorithmConfig& config,
                         torch::Device device) {
  if (!device.is_cuda()) return false;
  if (phase == "guidance") return true;  // iql or twin-q, the same for every algorithm
  const AlgorithmEntry& entry = find_algorithm(algorithm);
  return entry.stacks != nullptr && entry.stacks(phase, config, device);
}

std::unique_ptr<StackedSteps> make_stacked_steps(const std::string& algorithm, const std::string& phase,
                                                 const std::vector<StackMember>& members) {
  if (members.empty()) throw Error("internal: a stack of no runs");
  if (phase == "guidance") return std::make_unique<GuidancePhaseStack>(members);
  const AlgorithmEntry& entry = find_algorithm(algorithm);
  if (entry.make_stacked == nullptr) throw Error("internal: no stacked steps for " + algorithm);
  return entry.make_stacked(phase, members);
}

}  // namespace modiff::agents
