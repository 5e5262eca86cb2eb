#include "modiff/datasets/data_home.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "modiff/common/environment.h"
#include "modiff/common/error.h"

namespace modiff::datasets {

std::string data_home() { return data_home_directory(); }

std::string dataset_path(const std::string& name) { return data_home() + "/datasets/" + name + ".hdf5"; }

void check_dataset_name(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 128 && name.front() != '.' &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
                  });
  if (!ok) throw Error("dataset name '" + name + "' must be 1-128 letters, digits, '.', '_' or '-'");
}

const std::vector<SuiteEntry>& suite() {
  static const std::vector<SuiteEntry> entries = [] {
    std::vector<SuiteEntry> out;
    for (const auto& env : envs::all_envs()) {
      const std::string robot = env.id.substr(std::string("bullet-").size(), env.id.size() - 10);
      for (const char* level : {"random", "medium", "expert", "medium-replay", "medium-expert"})
        out.push_back({"bullet-" + robot + "-" + level + "-v0", &env, level});
    }
    return out;
  }();
  return entries;
}

const envs::EnvSpec* env_for_dims(int obs_dim, int act_dim) {
  for (const auto& env : envs::all_envs())
    if (env.obs_dim == obs_dim && env.act_dim == act_dim) return &env;
  return nullptr;
}

std::vector<std::string> datasets_in_home() {
  namespace fs = std::filesystem;
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(data_home() + "/datasets", ec))
    if (entry.is_regular_file() && entry.path().extension() == ".hdf5") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace modiff::datasets
