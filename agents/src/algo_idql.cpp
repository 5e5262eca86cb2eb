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

  // The two updates share only the batch: on CUDA they run as parallel branches.
  StepMetrics joint_step(const Batch& batch) override {
    torch::Tensor bc;
    StepMetrics m;
    run_concurrently(data_.device, [&] { bc = bc_update(batch); }, [&] { m = guidance_step(batch); });
    m.bc_loss = bc;
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
