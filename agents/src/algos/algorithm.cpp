#include "algos/algorithm.h"

#include "modiff/agents/train.h"
#include "modiff/common/error.h"
#include "runtime/cuda_support.h"

namespace modiff::agents {

// Each algorithm's file defines its entry.
extern const AlgorithmEntry kIdql, kDql, kCfg, kEdp;

const std::vector<AlgorithmEntry>& algorithms() {
  static const std::vector<AlgorithmEntry> table = {kIdql, kDql, kCfg, kEdp};
  return table;
}

const AlgorithmEntry& find_algorithm(const std::string& name) {
  std::string known;
  for (const auto& a : algorithms()) {
    if (a.name == name) return a;
    known += (known.empty() ? "" : ", ") + std::string(a.name);
  }
  throw Error("--algo must be one of " + known + ", got '" + name + "'");
}

namespace {

struct GuidanceKind {
  const char* name;
  GuidanceTable describe;
};
const GuidanceKind kGuidanceKinds[] = {{"iql", describe_iql_guidance}, {"twin-q", describe_twin_q_guidance}};

GuidanceTable find_guidance_kind(const std::string& kind) {
  for (const auto& g : kGuidanceKinds)
    if (g.name == kind) return g.describe;
  throw Error("--guidance-kind must be iql or twin-q, got '" + kind + "'");
}

}  // namespace

ResolvedConfig resolve_config(const std::string& algo, const std::string& guidance_kind, const std::string& dataset,
                              const std::vector<std::string>& overrides) {
  ResolvedConfig r;
  r.algorithm = &find_algorithm(algo);
  r.guidance_kind = guidance_kind.empty() ? r.algorithm->guidance_kind : guidance_kind;
  const GuidanceTable guidance_table = find_guidance_kind(r.guidance_kind);
  r.config = r.algorithm->config();
  r.config->describe(r.table, dataset);
  guidance_table(r.table, *r.config, dataset);
  const std::string owner = algo + " with " + r.guidance_kind + " guidance";
  for (const auto& assignment : overrides) r.table.set(assignment, owner);
  r.config->guidance.normalize_obs = r.config->policy.normalize_obs = r.config->normalize_obs;
  return r;
}

StepMetrics Algorithm::guidance_step(const Batch& batch) {
  // Guidance-first: depends on the data alone (twin-q bootstraps from the dataset's next action).
  return guidance_step_metrics(guidance_.update(batch, batch.next_act));
}

StepMetrics guidance_step_metrics(const GuidanceMetrics& g) {
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

void Algorithm::concurrently(const std::vector<std::function<void()>>& branches) {
  if (policy_.implementation() == Implementation::Fast) {
    run_concurrently(data_.device, branches);
    return;
  }
  for (const auto& branch : branches) branch();
}

// The torch-free view of the tables (train.h).
std::vector<HyperparameterRow> hyperparameters(const std::string& algo, const std::string& guidance_kind,
                                               const std::string& dataset, const std::vector<std::string>& overrides) {
  const ResolvedConfig r = resolve_config(algo, guidance_kind, dataset, overrides);
  std::vector<HyperparameterRow> rows;
  for (const auto& row : r.table.rows()) rows.push_back({row.name, row.value, row.range, row.source});
  return rows;
}

std::vector<std::string> algorithm_names() {
  std::vector<std::string> names;
  for (const auto& a : algorithms()) names.push_back(a.name);
  return names;
}

}  // namespace modiff::agents
