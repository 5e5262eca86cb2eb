#pragma once
// Soft Actor-Critic, online on the vector env: the behavior policies that
// generate the bullet-D4RL datasets. Hyperparameters follow CleanRL's
// sac_continuous_action.py. This header stays free of LibTorch.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace modiff::behavior {

struct SacConfig {
  int hidden = 256;            // two hidden layers for actor and critics
  double gamma = 0.99;
  double tau = 0.005;          // target Polyak rate
  int batch_size = 256;
  double policy_lr = 3e-4;
  double q_lr = 1e-3;
  long learning_starts = 5000;  // uniform random actions before this many steps
  int policy_frequency = 2;     // delayed actor updates (that many at a time)
  bool autotune_alpha = true;   // entropy temperature, target entropy -act_dim
  double alpha = 0.2;           // initial / fixed temperature
  long buffer_size = 1000000;
};

struct SacRunOptions {
  std::string env_id;
  long total_steps = 1000000;  // env steps (all envs together)
  int num_envs = 1;
  uint64_t seed = 0;
  std::string device = "auto";
  std::string out_dir = "runs/behavior";
  long snapshot_every = 50000;  // actor snapshot + evaluation
  int eval_episodes = 10;
  bool resume = false;
  bool quiet = false;
};

struct SnapshotRecord {
  long step = 0;
  std::string file;             // relative to out_dir
  double mean_return = 0;
  double normalized_return = 0;
};

// As snapshots.json and the checkpoint's state.json hold a snapshot.
void to_json(nlohmann::json& j, const SnapshotRecord& s);
void from_json(const nlohmann::json& j, SnapshotRecord& s);

struct SacRunResult {
  std::vector<SnapshotRecord> snapshots;
  double env_steps_per_s = 0;
};

// Trains (or resumes) SAC, writing out_dir/checkpoint/ (atomically, every
// snapshot) and out_dir/snapshots/step_NNNNNNNN.pt with snapshots.json.
SacRunResult train_sac(const SacRunOptions& options, const SacConfig& config = {});

}  // namespace modiff::behavior
