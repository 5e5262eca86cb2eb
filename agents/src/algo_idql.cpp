// IDQL (Hansen-Estruch et al. 2023; philippe-eecs/IDQL ddpm_iql_simple): the
// diffusion policy is pure behavior cloning; the IQL critic is trained beside
// it from the data and only used at inference to pick among candidates. Each
// joint step: actor update, then V, then Q.
#include "algorithm.h"
#include "cuda_support.h"

namespace modiff::agents {
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
    run_concurrently(
        data_.device, [&] { for (size_t k = 0; k < batches.size(); ++k) bc[k] = bc_update(batches[k]); },
        [&] { for (size_t k = 0; k < batches.size(); ++k) m[k] = guidance_step(batches[k]); });
    for (size_t k = 0; k < batches.size(); ++k) m[k].bc_loss = bc[k];
    return m;
  }

  StepMetrics diffusion_step(const Batch& batch) override {
    StepMetrics m;
    m.bc_loss = bc_update(batch);
    return m;
  }
};

}  // namespace

std::unique_ptr<Algorithm> make_idql(GuidanceModule& g, DiffusionModel& p, const OfflineData& d) {
  return std::make_unique<Idql>(g, p, d);
}

}  // namespace modiff::agents
