#pragma once
// Offline datasets in D4RL's HDF5 layout:
//   observations [N, obs] f32, actions [N, act] f32, rewards [N] f32,
//   terminals [N] bool, timeouts [N] bool, optional next_observations [N, obs],
//   optional infos/* datasets, and file attributes describing where the data
//   came from (env id, dataset name, level, generator version, seed, behavior
//   policy and its measured return).
// terminals mark true episode ends (the MDP stopped: bootstrap with 0),
// timeouts mark time-limit ends (bootstrap from the next state), exactly as
// D4RL's qlearning_dataset uses them.
#include <cstdint>
#include <string>
#include <vector>

#include "modiff/envs/env_spec.h"

namespace modiff::datasets {

struct DatasetAttributes {
  std::string env_id;             // bullet-hopper-v0
  std::string name;               // bullet-hopper-medium-v0
  std::string level;              // random, medium, expert, medium-replay, medium-expert, imported
  std::string generator = "modiff";  // generator and version, or the import source format
  long long seed = 0;
  std::string behavior_policy;    // what produced the actions
  double behavior_return = 0;     // its measured mean episode return (0 if unknown)
};

struct Dataset {
  DatasetAttributes attributes;
  int obs_dim = 0;
  int act_dim = 0;
  std::vector<float> observations;       // [N, obs_dim]
  std::vector<float> actions;            // [N, act_dim]
  std::vector<float> rewards;            // [N]
  std::vector<uint8_t> terminals;        // [N]
  std::vector<uint8_t> timeouts;         // [N]
  std::vector<float> next_observations;  // [N, obs_dim] or empty

  size_t size() const { return rewards.size(); }
};

// Writes `dataset` to `path` atomically (temporary name, then rename). Returns
// the sha256 of the written file. Never leaves a partial file under `path`.
std::string write_d4rl_file(const std::string& path, const Dataset& dataset);

// Reads and validates a D4RL-layout file: required keys, shapes, dtypes,
// finiteness, consistent episode boundaries, and agreement with the env named
// by its env_id attribute (or `expected_env` when given). Every failure is a
// modiff::Error naming the file, the key and the index.
Dataset read_d4rl_file(const std::string& path, const envs::EnvSpec* expected_env = nullptr);

// Validates an in-memory dataset (the checks of read_d4rl_file); `where` names it in errors.
void validate_dataset(const Dataset& dataset, const std::string& where, const envs::EnvSpec* env);

struct EpisodeSummary {
  std::vector<double> returns;  // completed episodes (ended by a terminal or timeout)
  std::vector<int> lengths;
  long unfinished_rows = 0;     // rows after the last episode end
};

// Splits the rows into episodes at terminals and timeouts.
EpisodeSummary summarize_episodes(const Dataset& dataset);

}  // namespace modiff::datasets
