#pragma once
// The bullet-D4RL suite's fingerprints: the sha256, size, episodes and returns of each of the 20 datasets as
// `modiff data build NAME` makes them with the default seed and size, committed in
// assets/datasets/suite-fingerprints.json. Any machine's build of a suite dataset must match its entry
// (docs/datasets.md): `modiff data info` says whether a file does, `modiff data suite` checks the data home.
#include <nlohmann/json.hpp>
#include <string>

#include "modiff/common/summary.h"
#include "modiff/datasets/d4rl_dataset.h"

namespace modiff::cli {

// What `data info` and the fingerprints report of a dataset file.
struct DatasetFacts {
  std::string name, path, sha256, env_id;
  long long seed = 0;
  unsigned long long bytes = 0;
  size_t transitions = 0, episodes = 0;
  long unfinished_rows = 0;
  Summary returns, normalized;
};

DatasetFacts dataset_facts(const std::string& path);

std::string suite_fingerprints_path();  // assets_dir()/datasets/suite-fingerprints.json
// The committed fingerprints by dataset name (empty when the file is absent); a corrupt file is an error.
nlohmann::json read_suite_fingerprints();
nlohmann::json fingerprint_of(const DatasetFacts& facts);

// Whether `facts` is the suite's build of its dataset: "matches", "DIFFERS ...", or why it is not compared
// (another name, seed or size, no fingerprint yet).
struct FingerprintVerdict {
  bool compared = false, matches = false;
  std::string text;
};
FingerprintVerdict check_suite_fingerprint(const DatasetFacts& facts, const nlohmann::json& fingerprints);

}  // namespace modiff::cli
