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

  // The policy's parts, for modiff's own inference code (defined in agents/src/infer/inference_impl.h).
  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit InferencePolicy(std::unique_ptr<Impl> impl);
  void act_chunks(const float* observations, int n, double* actions, const uint64_t* noise_keys);
  std::unique_ptr<Impl> impl_;
};

// Whether SharedPasses stacks the chunks of policies alike.
enum class PassStacking {
  Auto,    // on CUDA; on the CPU each policy its own passes (modiff's fixed-order products, docs/statistics.md)
  Always,  // on any device (tests of the stacked passes on the CPU)
  Never,   // each policy its own passes (what stacking gains, `modiff bench eval --stacking never`)
};

// The rows of several policies acted on at once: one step of the evaluator. Policies alike (the same networks'
// shapes, sampler, candidates, selection and chunk) run their chunks (`chunk` rows each, the last padded) in
// stacked passes: every layer one batched product over a fixed number of chunk slots, set by the chunk's rows
// and candidates alone (kStackedRowsPerPass), the slots filled with whichever policies' chunks are waiting and
// the rest padding. A batched product computes each slot alike whatever the others hold, and the pass's shape
// does not change with how many slots are filled, so a chunk's actions depend on its policy, observations and
// noise keys alone: not on what else is evaluated beside it. They are those of the stacked pass, which adds
// its products in another order than InferencePolicy::act: the evaluator acts through SharedPasses even for one
// policy. Requests without noise keys, with chunk 0, of classifier-free guidance, or (Auto) on the CPU run in
// their policy's own passes; requests of different policies run on threads of their own.
class SharedPasses {
 public:
  explicit SharedPasses(PassStacking stacking = PassStacking::Auto);
  SharedPasses(const SharedPasses&) = delete;
  SharedPasses& operator=(const SharedPasses&) = delete;
  ~SharedPasses();
  struct Request {
    InferencePolicy* policy = nullptr;
    const float* observations = nullptr;  // [n, obs_dim]
    int n = 0;
    double* actions = nullptr;  // [n, act_dim]
    const uint64_t* noise_keys = nullptr;
  };
  // Each policy in at most one request.
  void act(const std::vector<Request>& requests);
  // Stacked passes run and chunk slots filled, since construction (benchmarks).
  long passes() const;
  long filled_slots() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The rows of a stacked pass: slots x chunk rows x candidates is at most this (and slots at most 32).
inline constexpr int kStackedRowsPerPass = 32768;

}  // namespace modiff::agents
