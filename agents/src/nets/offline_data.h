#pragma once
// A dataset as transitions on the training device, sampled without any host
// round trip (indices drawn on the device), and the observation normalizer
// every module carries.
#include <torch/torch.h>

#include <vector>

#include "modiff/datasets/d4rl_dataset.h"

namespace modiff::agents {

// (s - mean) / std; the identity when mean is 0 and std is 1.
struct Normalizer {
  std::vector<float> mean, std;
  torch::Tensor mean_t, std_t;  // on the device

  bool is_identity = false;  // mean 0 and std 1: apply returns its input (no kernels)

  static Normalizer identity(int dim, torch::Device device);
  static Normalizer from(const std::vector<float>& mean, const std::vector<float>& std, torch::Device device);
  torch::Tensor apply(const torch::Tensor& obs) const { return is_identity ? obs : (obs - mean_t) / std_t; }
};

struct Batch {
  torch::Tensor index;     // [B] rows of the data
  torch::Tensor obs, act, reward, next_obs, next_act, not_done;  // reward, not_done: [B, 1]
};

// D4RL's qlearning_dataset rule: row i is a transition unless it is a time-limit
// end (its successor is unknown) or the unfinished last row. The next
// observation is next_observations[i] when the file has them, else
// observations[i + 1]; the next action (a SARSA target's a') is actions[i + 1],
// zeros after a terminal (masked by not_done anyway).
class OfflineData {
 public:
  OfflineData(const datasets::Dataset& dataset, torch::Device device);
  Batch sample(long batch_size) const;  // rows(sample_index(batch_size))
  torch::Tensor sample_index(long batch_size) const;  // the draw of a batch's rows
  Batch rows(const torch::Tensor& index) const;
  // The columns of rows of the table, [..., width] (the last dimension the table's columns): a gather of
  // several batches at once, [K, B, width], gives [K, B, ...] columns.
  Batch columns(const torch::Tensor& table) const;
  const torch::Tensor& table() const { return table_; }

  long size = 0;
  int obs_dim = 0, act_dim = 0;
  // Views (columns) of one [size, width] table, so that a batch is one gather.
  torch::Tensor obs, act, reward, next_obs, next_act, not_done;
  std::vector<float> obs_mean, obs_std;  // over the transitions, std floored at 1e-3
  double min_episode_return = 0, max_episode_return = 0;
  torch::Device device;

 private:
  torch::Tensor table_;  // [size, obs | act | reward | next_obs | next_act | not_done]
};

}  // namespace modiff::agents
