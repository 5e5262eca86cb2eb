#include "modiff/envs/vector_env.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include "modiff/common/error.h"

namespace modiff::envs {

struct VectorEnv::Affinity {
  tbb::affinity_partitioner partitioner;
};

VectorEnv::VectorEnv(const EnvSpec& spec, int num_envs, uint64_t seed)
    : spec_(spec), seed_(seed), affinity_(std::make_unique<Affinity>()) {
  if (num_envs <= 0) throw Error("number of envs must be positive, got " + std::to_string(num_envs));
  // Envs are built on the worker threads with the same affinity partitioner
  // that later steps them, so an env's memory tends to be allocated, cached
  // and written by one thread rather than interleaved with its neighbours'.
  envs_.resize(num_envs);
  tbb::parallel_for(
      tbb::blocked_range<int>(0, num_envs),
      [&](const tbb::blocked_range<int>& r) {
        for (int i = r.begin(); i != r.end(); ++i) envs_[i] = std::make_unique<LocomotionEnv>(spec);
      },
      affinity_->partitioner);
  const size_t n = num_envs;
  obs_.assign(n * spec.obs_dim, 0.f);
  final_obs_.assign(n * spec.obs_dim, 0.f);
  rewards_.assign(n, 0.0);
  running_return_.assign(n, 0.0);
  episode_return_done_.assign(n, 0.0);
  running_length_.assign(n, 0);
  episode_length_done_.assign(n, 0);
  terminated_.assign(n, 0);
  truncated_.assign(n, 0);
}

void VectorEnv::reset() {
  const int obs_dim = spec_.obs_dim;
  tbb::parallel_for(tbb::blocked_range<int>(0, num_envs()), [&](const tbb::blocked_range<int>& r) {
    for (int i = r.begin(); i != r.end(); ++i) {
      envs_[i]->reset(seed_ + static_cast<uint64_t>(i), &obs_[static_cast<size_t>(i) * obs_dim]);
      running_return_[i] = 0;
      running_length_[i] = 0;
      terminated_[i] = truncated_[i] = 0;
    }
  }, affinity_->partitioner);
}

void VectorEnv::step(const double* actions, const uint8_t* active) {
  const int obs_dim = spec_.obs_dim, act_dim = spec_.act_dim;
  tbb::parallel_for(tbb::blocked_range<int>(0, num_envs()), [&](const tbb::blocked_range<int>& r) {
    for (int i = r.begin(); i != r.end(); ++i) {
      if (active && !active[i]) continue;
      float* obs = &obs_[static_cast<size_t>(i) * obs_dim];
      StepResult s = envs_[i]->step(actions + static_cast<size_t>(i) * act_dim, obs);
      rewards_[i] = s.reward;
      terminated_[i] = s.terminated;
      truncated_[i] = s.truncated;
      running_return_[i] += s.reward;
      running_length_[i] += 1;
      if (s.terminated || s.truncated) {
        std::copy(obs, obs + obs_dim, &final_obs_[static_cast<size_t>(i) * obs_dim]);
        episode_return_done_[i] = running_return_[i];
        episode_length_done_[i] = running_length_[i];
        running_return_[i] = 0;
        running_length_[i] = 0;
        envs_[i]->reset(std::nullopt, obs);  // continues env i's own stream
      }
    }
  }, affinity_->partitioner);
}

VectorEnv::~VectorEnv() = default;
VectorEnv::VectorEnv(VectorEnv&&) noexcept = default;

}  // namespace modiff::envs
