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

// The configs as manifests hold them, through nlohmann-json's mapping (nlohmann::json(config),
// j.get<GuidanceConfig>()). Reading checks every size before it sizes a network.
void to_json(nlohmann::json& j, const GuidanceConfig& c);
void from_json(const nlohmann::json& j, GuidanceConfig& c);
void to_json(nlohmann::json& j, const DiffusionPolicyConfig& c);
void from_json(const nlohmann::json& j, DiffusionPolicyConfig& c);
void to_json(nlohmann::json& j, const Normalizer& n);
// A normalizer needs its dims and device besides the JSON: read with its checks here.
Normalizer normalizer_from_json(const nlohmann::json& j, int dim, torch::Device device);

// A frozen guidance module and an inference-only diffusion policy from their directories.
// Either implementation loads either's artifacts (the same parameters under the same names); evaluation
// runs the fast one.
std::unique_ptr<GuidanceModule> load_guidance(const std::string& dir, torch::Device device,
                                              Implementation implementation = Implementation::Fast);
std::unique_ptr<DiffusionModel> load_diffusion(const std::string& dir, torch::Device device,
                                               Implementation implementation = Implementation::Fast);

}  // namespace modiff::agents
