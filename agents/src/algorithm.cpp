#include "algorithm.h"

#include "modiff/common/error.h"

namespace modiff::agents {

std::unique_ptr<Algorithm> make_idql(GuidanceModule&, DiffusionModel&, const OfflineData&);
std::unique_ptr<Algorithm> make_dql(const AlgorithmConfig&, GuidanceModule&, DiffusionModel&, const OfflineData&);
std::unique_ptr<Algorithm> make_cfg(GuidanceModule&, DiffusionModel&, const OfflineData&);

StepMetrics Algorithm::guidance_step(const Batch& batch) {
  // Guidance-first: depends on the data alone (twin-q bootstraps from the dataset's next action).
  auto g = guidance_.update(batch, batch.next_act);
  StepMetrics m;
  m.critic_loss = g.critic_loss;
  m.value_loss = g.value_loss;
  m.q_mean = g.q_mean;
  m.q_std = g.q_std;
  return m;
}

std::vector<StepMetrics> Algorithm::joint_steps(const std::vector<Batch>& batches) {
  std::vector<StepMetrics> metrics;
  for (const auto& b : batches) metrics.push_back(joint_step(b));
  return metrics;
}

torch::Tensor Algorithm::bc_update(const Batch& batch, const torch::Tensor& cond) {
  policy_.zero_grad();
  auto loss = policy_.bc_loss(batch.obs, batch.act, cond);
  loss.backward();
  policy_.optimizer_step();
  return loss.detach();
}

std::unique_ptr<Algorithm> make_algorithm(const std::string& name, const AlgorithmConfig& config,
                                          GuidanceModule& guidance, DiffusionModel& policy, const OfflineData& data) {
  if (name == "idql") return make_idql(guidance, policy, data);
  if (name == "dql") return make_dql(config, guidance, policy, data);
  if (name == "cfg") return make_cfg(guidance, policy, data);
  throw Error("unknown algorithm '" + name + "' (idql, dql, cfg)");
}

}  // namespace modiff::agents
