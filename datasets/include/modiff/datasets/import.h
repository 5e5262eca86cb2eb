#pragma once
// Bringing users' files into the data home, converted to D4RL's conventions.
#include <string>

#include "modiff/datasets/d4rl_dataset.h"

namespace modiff::datasets {

enum class ImportFormat { D4rl, D4rlPybullet };

ImportFormat parse_import_format(const std::string& name);

// Reads a d4rl-pybullet file (takuseno/d4rl-pybullet) and converts it: there,
// row t holds o_t, a_t, the reward and terminal flag of the step that *arrived*
// at o_t, each episode ends with a dummy row (zero action, terminal 1), and
// time-limit ends are stored as terminals. The result pairs each action with
// the reward it earned, drops the dummy rows, fills next_observations, and
// marks an episode end as a timeout when the episode ran the env's full
// max_episode_steps, else as a terminal.
Dataset read_d4rl_pybullet_file(const std::string& path, const envs::EnvSpec* env = nullptr);

struct ImportResult {
  std::string name, path, sha256;
  size_t transitions = 0;
};

// Reads `source` in `format`, validates it, and writes it as data_home()/datasets/NAME.hdf5.
// Refuses to replace an existing dataset unless `overwrite`.
ImportResult import_dataset(const std::string& source, ImportFormat format, const std::string& name,
                            const envs::EnvSpec* env, bool overwrite);

}  // namespace modiff::datasets
