#pragma once
// A group's runs trained as one (train/group.cpp): where K runs of one algorithm, phase and network shapes train
// side by side on one GPU, their networks are stacked (nets/stacked.h) and every layer of every update is one
// batched product for all K, so that each kernel does the work of K runs instead of K small kernels contending
// for the GPU (docs/benchmarks.md, "Many runs at once").
//
// Each run stays the run it would be alone: it draws its batches, noise, steps and dropout from its own random
// streams in the order its own steps draw them (RunContext::Draws), its parameters, optimizer state and EMA
// stay its own (moved into a row of the stack), and its metrics go to its own log. On CUDA the stacked products
// add in another order than a run's own kernels, so a stacked run agrees with the run alone to floating-point
// tolerance (tests/agents/test_train.cpp, "[stack]"); on the CPU runs are never stacked.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "algos/algorithm.h"
#include "modules/diffusion_policy.h"
#include "modules/guidance.h"
#include "nets/offline_data.h"
#include "runtime/run_context.h"

namespace modiff::agents {

// One run of a stack: what it trains and where its draws come from.
struct StackMember {
  RunContext* context;
  DiffusionModel* policy;
  GuidanceModule* guidance;
  const OfflineData* data;
  long batch;
};

class StackedSteps {
 public:
  virtual ~StackedSteps() = default;
  // `count` consecutive steps of every member: metrics[member][step], device scalars. No host sync, so that the
  // steps can be captured in one CUDA graph.
  virtual std::vector<std::vector<StepMetrics>> steps(int count) = 0;
};

// Whether `algorithm`'s `phase` (joint | guidance | diffusion) has stacked steps for these networks on `device`
// (CUDA only: on the CPU the runs of a group take their own steps, bit-identical to the runs alone).
bool stacked_steps_exist(const std::string& algorithm, const std::string& phase, const DiffusionPolicyConfig& policy,
                         const GuidanceConfig& guidance, torch::Device device);
// The stacked steps of the members (all of one algorithm, phase and hyperparameters, on one CUDA device); moves
// their parameters into the stack's rows.
std::unique_ptr<StackedSteps> make_stacked_steps(const std::string& algorithm, const std::string& phase,
                                                 const std::vector<StackMember>& members);

}  // namespace modiff::agents
