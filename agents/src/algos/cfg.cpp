// Classifier-free reward guidance. The guidance module labels each (s, a) of
// the data with a value (iql: advantage Q - V; twin-q: Q), standardized over
// the data; the denoiser learns eps(x, t, s, c) with c = [label, 1], replaced
// by the null condition [0, 0] with probability cond_dropout. Sampling mixes
// eps(null) + w (eps(c) - eps(null)) at c = a high label (a quantile of the
// data's labels). Under a frozen guidance every row's label is computed once;
// in joint training each batch is labelled by the current guidance and
// standardized within the batch, and the final statistics are taken once at
// the end.
#include "algos/algorithm.h"

namespace modiff::agents {

void describe_idql_policy(Hyperparameters& h, AlgorithmConfig& c);  // idql.cpp

// IDQL's policy with a condition input and the three numbers of classifier-free guidance (modiff's decision,
// docs/agents.md: the label is the guidance's value of the data action).
struct CfgConfig : AlgorithmConfig {
  void describe(Hyperparameters& h, const std::string&) override {
    describe_idql_policy(h, *this);
    policy.denoiser.cond_dim = 2;  // the condition [label, 1]; null is [0, 0]
    h.number("policy.cond_dropout", policy.cond_dropout, 0.25, "[0, 1)", "modiff: the null condition's probability in training");
    h.number("policy.guide_weight", policy.guide_weight, 1.5, "[0, 100]", "modiff: w in eps(null) + w (eps(c) - eps(null))");
    h.number("policy.target_quantile", policy.target_quantile, 0.9, "[0, 1]", "modiff: the sampling label's quantile of the data's labels");
    h.change_reference("policy.candidates", "16", "modiff: fewer candidates, the label already steers");
  }
};

namespace {

class Cfg : public Algorithm {
 public:
  using Algorithm::Algorithm;

  StepMetrics joint_step(const Batch& batch) override {
    StepMetrics m = guidance_step(batch);
    auto label = raw_labels(batch.obs, batch.act);
    label = (label - label.mean()) / (label.std() + 1e-6);
    m.bc_loss = bc_update(batch, policy_.drop_conditions(DiffusionModel::condition(label)));
    return m;
  }

  void on_guidance_frozen() override {
    labels_ = standardized_data_labels();
  }

  StepMetrics diffusion_step(const Batch& batch) override {
    StepMetrics m;
    auto label = labels_.index_select(0, batch.index);
    m.bc_loss = bc_update(batch, policy_.drop_conditions(DiffusionModel::condition(label)));
    return m;
  }

  void finish() override {
    if (!labels_.defined()) labels_ = standardized_data_labels();
  }

 private:
  torch::Tensor raw_labels(const torch::Tensor& obs, const torch::Tensor& act) {
    torch::NoGradGuard no_grad;
    auto q = guidance_.q_min(obs, act);
    return guidance_.has_v() ? q - guidance_.v(obs) : q;
  }

  // Labels of every row, standardized; sets the policy's label statistics.
  torch::Tensor standardized_data_labels() {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> parts;
    const long chunk = 65536;
    for (long start = 0; start < data_.size; start += chunk) {
      const long n = std::min(chunk, data_.size - start);
      parts.push_back(raw_labels(data_.obs.narrow(0, start, n), data_.act.narrow(0, start, n)));
    }
    auto raw = torch::cat(parts);
    policy_.label_mean = raw.mean().item<double>();
    policy_.label_std = raw.std().item<double>() + 1e-6;
    auto labels = (raw - policy_.label_mean) / policy_.label_std;
    policy_.target_label =
        torch::quantile(labels.view(-1).to(torch::kCPU), policy_.config().target_quantile).item<double>();
    return labels;
  }

  torch::Tensor labels_;
};

}  // namespace

extern const AlgorithmEntry kCfg = {
    "cfg", "iql", [] { return std::unique_ptr<AlgorithmConfig>(new CfgConfig); },
    [](const AlgorithmConfig&, GuidanceModule& g, DiffusionModel& p, const OfflineData& d) {
      return std::unique_ptr<Algorithm>(new Cfg(g, p, d));
    }};

}  // namespace modiff::agents
