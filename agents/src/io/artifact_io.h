#pragma once
// Saving and loading the LibTorch side of artifacts and checkpoints: named
// tensors in one archive, configs to and from JSON, modules rebuilt from a
// manifest.
#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "modules/diffusion_policy.h"
#include "modules/guidance.h"
#include "modiff/torch/torch_support.h"

namespace modiff::agents {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes the tensors (moved to the CPU) to `path` (a plain file; callers write atomically).
void save_tensors(const std::string& path, const NamedTensors& tensors);

// Reads `path` and copies each named tensor into the given one (same shape), in place.
void load_tensors_into(const std::string& path, const NamedTensors& tensors);

nlohmann::json to_json(const GuidanceConfig& c);
GuidanceConfig guidance_config_from_json(const nlohmann::json& j);
nlohmann::json to_json(const DiffusionPolicyConfig& c);
DiffusionPolicyConfig policy_config_from_json(const nlohmann::json& j);
nlohmann::json to_json(const Normalizer& n);
Normalizer normalizer_from_json(const nlohmann::json& j, int dim, torch::Device device);

// A frozen guidance module and an inference-only diffusion policy from their directories.
std::unique_ptr<GuidanceModule> load_guidance(const std::string& dir, torch::Device device);
std::unique_ptr<DiffusionModel> load_diffusion(const std::string& dir, torch::Device device);

}  // namespace modiff::agents
