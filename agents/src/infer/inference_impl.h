#pragma once
// What an InferencePolicy holds (inference_policy.cpp) and the pieces its passes share with the evaluator's
// stacked passes (shared_passes.cpp): each row's noise drawn from its own key, and the draw of a candidate from
// weights.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>

#include "modiff/agents/inference_policy.h"
#include "modules/diffusion_policy.h"
#include "modules/guidance.h"

namespace modiff::agents {

struct InferencePolicy::Impl {
  torch::Device device{torch::kCPU};
  ArtifactInfo diffusion_info, guidance_info;
  std::unique_ptr<DiffusionModel> policy;
  std::unique_ptr<GuidanceModule> guidance;
  int candidates = 1;
  std::string select = "argmax";
  double temperature = 1.0;
  int chunk = 16;
  at::Generator generator;
  void* stream = nullptr;  // on CUDA its own stream: policies evaluated side by side overlap on the GPU

  void act_rows(const float* observations, int n, double* actions, const uint64_t* noise_keys);
};

// Per-row noise [T, n k, act] and selection uniforms [n], each row from its key alone; rows from `live` on
// (default: none) are left zero (the padding of a pass).
std::pair<torch::Tensor, torch::Tensor> keyed_noise(const uint64_t* keys, int n, int k, int steps, int act_dim,
                                                    int live = -1);

// Index drawn from each row's (unnormalized) weights [rows, k] with the given uniforms [rows]: inverse CDF.
torch::Tensor draw_from_weights(const torch::Tensor& weights, const torch::Tensor& uniform);

// The candidate each row keeps, by the policy's rule, from Q [rows, k] (and the advantage's V [rows, 1] for
// expectile), each row's draw from `uniform` [rows] (undefined: from `generator`).
torch::Tensor pick_candidates(const InferencePolicy::Impl& m, const torch::Tensor& q, const torch::Tensor& v,
                              const torch::Tensor& uniform);

}  // namespace modiff::agents
