#pragma once
// A diffusion policy paired, for inference, with a guidance module (any
// compatible one: another seed's, another algorithm's) or with none. Actions
// for a batch of observations come from one batched denoising pass over all
// observations x all candidates; the guidance then picks one candidate per
// observation. LibTorch-free header.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "modiff/agents/artifact.h"

namespace modiff::agents {

struct InferenceOptions {
  std::string device = "auto";
  int candidates = 0;       // 0: the policy's default (idql 64, dql 50, cfg 16); 1 without guidance
  std::string select;       // argmax | softmax | expectile; empty: the policy's default
  double temperature = 1.0; // softmax over Q / temperature
  uint64_t seed = 0;
  // Observations per network pass. The policy always runs on exactly this many
  // rows (the last pass padded), so that an observation's action never depends
  // on how many others share the call: a matrix product's rounding can change
  // with its shape, and chaotic dynamics amplify it. 0: one pass over all rows
  // (fastest; reproducible only for the same batch). -1: 64 on CUDA (wide
  // passes keep the GPU busy), 4 on the CPU (padding costs the CPU in full).
  int chunk = -1;
};

class InferencePolicy {
 public:
  // guidance_dir: a guidance artifact, or "" / "none" for the policy alone (one sample).
  // Throws on incompatible pairings; pairings across datasets add to `warnings`.
  static InferencePolicy load(const std::string& diffusion_dir, const std::string& guidance_dir,
                              const InferenceOptions& options, std::vector<std::string>* warnings = nullptr);
  InferencePolicy(InferencePolicy&&) noexcept;
  InferencePolicy& operator=(InferencePolicy&&) noexcept;
  ~InferencePolicy();

  // observations [n, obs_dim] -> actions [n, act_dim], in [-1, 1]. With
  // `noise_keys` (one per row), each row's randomness (its candidates' noise,
  // its selection draw) comes from its own key alone, drawn on the host: a
  // row's action then does not depend on which other rows share the batch.
  // Without, the policy's generator draws for the whole batch. Several policies may act at once from
  // different threads (on CUDA each on a stream of its own); one policy acts from one thread at a time.
  void act(const float* observations, int n, double* actions, const uint64_t* noise_keys = nullptr);
  void reseed(uint64_t seed);

  const ArtifactInfo& diffusion() const;
  const ArtifactInfo* guidance() const;  // nullptr without guidance
  int candidates() const;
  const std::string& select() const;

 private:
  struct Impl;
  explicit InferencePolicy(std::unique_ptr<Impl> impl);
  void act_chunks(const float* observations, int n, double* actions, const uint64_t* noise_keys);
  std::unique_ptr<Impl> impl_;
};

}  // namespace modiff::agents
