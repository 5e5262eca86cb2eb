#pragma once
// Building the bullet-D4RL suite from the committed behavior policies
// (assets/behavior/<env id>/manifest.json), the way D4RL defined each level:
//   random        : a randomly initialized SAC actor;
//   medium/expert : the medium (about a third of the expert's return) and the
//                   fully trained SAC actor;
//   medium-replay : what training saw until the medium policy: uniform random
//                   actions for the first learning_starts steps, then each
//                   training interval rolled out with the actor of its start
//                   (the initial actor, then snapshot after snapshot);
//   medium-expert : the medium dataset followed by the expert dataset.
#include <string>

#include "modiff/datasets/d4rl_dataset.h"
#include "modiff/datasets/data_home.h"

namespace modiff::behavior {

struct SuiteBuildOptions {
  long transitions = 1000000;  // per policy (medium-expert has twice that; medium-replay its own size)
  uint64_t seed = 0;
  int num_envs = 64;
};

// The assets folder (the repository's assets/; $MODIFF_ASSETS overrides it).
std::string assets_dir();
// The folder of an env's behavior policies: assets_dir()/behavior/<env id>.
std::string behavior_dir(const envs::EnvSpec& env);

// Builds the dataset of a suite entry; throws modiff::Error naming the missing
// policy or manifest entry.
datasets::Dataset build_suite_dataset(const datasets::SuiteEntry& entry, const SuiteBuildOptions& options);

// Rolls out one actor file (or a random-init actor when `policy_file` is empty).
datasets::Dataset build_policy_dataset(const envs::EnvSpec& env, const std::string& policy_file,
                                       const SuiteBuildOptions& options);

// The dataset file for a name or path; bullet-D4RL suite names are built into the data home on first use
// (progress on stderr unless quiet; a second process needing the same dataset waits for the first's build).
std::string resolve_dataset(const std::string& name_or_file, bool quiet);

}  // namespace modiff::behavior
