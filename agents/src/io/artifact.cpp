#include "modiff/agents/artifact.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "modiff/common/error.h"

namespace modiff::agents {

ArtifactInfo read_artifact(const std::string& dir, const std::string& expected_kind) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) throw Error(dir + ": no such " + expected_kind + " directory");
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  std::ifstream in(manifest_path);
  if (!in) throw Error(manifest_path + ": missing (not a modiff " + expected_kind + " artifact)");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const std::exception& e) {
    throw Error(manifest_path + ": not valid JSON");
  }
  ArtifactInfo a;
  a.dir = dir;
  a.manifest_text = text.str();
  try {
    a.kind = j.at("kind").get<std::string>();
    a.algorithm = j.at("algorithm").get<std::string>();
    a.env_id = j.at("env_id").get<std::string>();
    a.obs_dim = j.at("obs_dim").get<int>();
    a.act_dim = j.at("act_dim").get<int>();
    a.dataset_name = j.at("dataset").at("name").get<std::string>();
    a.dataset_sha256 = j.at("dataset").at("sha256").get<std::string>();
    a.seed = j.at("seed").get<uint64_t>();
    a.steps = j.at("steps").get<long>();
    a.schedule = j.at("schedule").get<std::string>();
  } catch (const std::exception& e) {
    throw Error(manifest_path + ": missing or mistyped key (" + std::string(e.what()) + ")");
  }
  if (a.kind != expected_kind)
    throw Error(dir + " is a " + a.kind + " artifact where a " + expected_kind + " one is needed");
  if (a.obs_dim <= 0 || a.act_dim <= 0 || a.obs_dim > 4096 || a.act_dim > 4096)
    throw Error(manifest_path + ": obs_dim and act_dim must be in 1..4096");
  if (!fs::exists(fs::path(dir) / "weights.pt")) throw Error(dir + "/weights.pt: missing");
  return a;
}

std::vector<std::string> check_pairing(const ArtifactInfo& d, const ArtifactInfo& g) {
  if (d.env_id != g.env_id)
    throw Error("cannot pair " + d.dir + " (env " + d.env_id + ") with guidance " + g.dir + " (env " + g.env_id + ")");
  if (d.obs_dim != g.obs_dim || d.act_dim != g.act_dim)
    throw Error("cannot pair " + d.dir + " (obs " + std::to_string(d.obs_dim) + ", act " + std::to_string(d.act_dim) +
                ") with guidance " + g.dir + " (obs " + std::to_string(g.obs_dim) + ", act " +
                std::to_string(g.act_dim) + ")");
  std::vector<std::string> warnings;
  if (d.dataset_sha256 != g.dataset_sha256)
    warnings.push_back("guidance " + g.dir + " was trained on " + g.dataset_name + " and the policy " + d.dir + " on " +
                       d.dataset_name +
                       " (different data): plug-and-play guidance holds only on one data distribution");
  return warnings;
}

}  // namespace modiff::agents
