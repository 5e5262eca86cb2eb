#pragma once
// A trained SAC actor used as a behavior policy: tanh-squashed Gaussian over
// actions in [-1, 1]. Loads the actor files that `modiff behavior train` writes
// (and that assets/behavior/ ships). LibTorch stays behind the pimpl.
#include <cstdint>
#include <memory>
#include <string>

namespace modiff::behavior {

struct PolicyFileInfo {
  std::string env_id;
  int obs_dim = 0, act_dim = 0, hidden = 0;
};

class GaussianPolicy {
 public:
  // A new actor with random initial weights (the "random" datasets' policy).
  static GaussianPolicy random_init(const std::string& env_id, int hidden, uint64_t seed);
  // Loads path (actor weights) and path + ".json" (dims, env); throws modiff::Error.
  static GaussianPolicy load(const std::string& path);
  void save(const std::string& path) const;  // atomically, with its .json

  GaussianPolicy(GaussianPolicy&&) noexcept;
  GaussianPolicy& operator=(GaussianPolicy&&) noexcept;
  ~GaussianPolicy();

  const PolicyFileInfo& info() const;
  // Actions for n observations ([n, obs] -> [n, act]); sampled from the policy
  // with its own seeded generator unless `deterministic` (tanh of the mean).
  void act(const float* observations, int n, double* actions, bool deterministic);
  // Samples for n observations, row r's noise drawn from keys[r] alone (modiff's Rng), without LibTorch's
  // kernels: fixed-order products (fixed_order_gemm.h) and glibc's double tanh and exp. A row's action thus
  // depends on its observation and key only, on any machine: this is how the suite's datasets are made.
  void sample_keyed(const float* observations, int n, const uint64_t* keys, double* actions) const;
  void reseed(uint64_t seed);

 private:
  struct Impl;
  explicit GaussianPolicy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend struct SacTrainer;
};

}  // namespace modiff::behavior
