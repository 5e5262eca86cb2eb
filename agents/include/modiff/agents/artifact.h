#pragma once
// Guidance modules and diffusion policies are saved each in its own directory:
// weights.pt (LibTorch) and manifest.json (kind, algorithm, hyperparameters,
// env, dims, observation normalization, dataset name and sha256, seed, steps,
// time and peak memory per phase). This header reads manifests and checks that
// two artifacts can work together; it stays free of LibTorch.
#include <cstdint>
#include <string>
#include <vector>

namespace modiff::agents {

struct ArtifactInfo {
  std::string dir;
  std::string kind;       // guidance | diffusion
  std::string algorithm;  // guidance: iql | twin-q; diffusion: idql | dql | cfg
  std::string env_id;     // empty for data of no registered env (tests' bandits)
  int obs_dim = 0, act_dim = 0;
  std::string dataset_name, dataset_sha256;
  uint64_t seed = 0;
  long steps = 0;
  std::string schedule;   // joint | guidance-first | guidance-from-dir
  std::string manifest_text;  // the whole manifest.json
};

// Reads DIR/manifest.json and checks that DIR/weights.pt exists; `expected_kind`
// (guidance or diffusion) must match. Every failure is one Error naming the
// directory and what is wrong.
ArtifactInfo read_artifact(const std::string& dir, const std::string& expected_kind);

// Throws an Error naming the mismatch when a diffusion policy and a guidance
// module cannot be paired (env, observation or action width); returns warnings
// for pairings that work but void the method's premise (different datasets).
std::vector<std::string> check_pairing(const ArtifactInfo& diffusion, const ArtifactInfo& guidance);

}  // namespace modiff::agents
