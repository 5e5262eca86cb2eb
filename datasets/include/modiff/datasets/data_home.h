#pragma once
// Where datasets live: $MODIFF_HOME (default ~/.cache/modiff)/datasets/NAME.hdf5,
// and the names of the bullet-D4RL suite.
#include <string>
#include <vector>

#include "modiff/envs/env_spec.h"

namespace modiff::datasets {

std::string data_home();                          // $MODIFF_HOME or ~/.cache/modiff
std::string dataset_path(const std::string& name);  // data_home()/datasets/NAME.hdf5

// Throws unless `name` is a usable dataset name (letters, digits, '.', '_', '-').
void check_dataset_name(const std::string& name);

struct SuiteEntry {
  std::string name;  // bullet-hopper-medium-v0
  const envs::EnvSpec* env;
  std::string level;  // random, medium, expert, medium-replay, medium-expert
};

// The 20 datasets of bullet-D4RL: 4 envs x 5 levels.
const std::vector<SuiteEntry>& suite();

// The env whose observation and action widths match (the four robots differ in both).
const envs::EnvSpec* env_for_dims(int obs_dim, int act_dim);

// The dataset names (without extension) present in the data home, sorted.
std::vector<std::string> datasets_in_home();

}  // namespace modiff::datasets
