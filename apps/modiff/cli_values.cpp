#include <tbb/global_control.h>

#include <memory>
#include <sstream>

#include "commands.h"
#include "modiff/common/error.h"

namespace modiff::cli {

void limit_threads(int threads) {
  // One process-wide limit; results never depend on it (see DESIGN.md).
  static std::unique_ptr<tbb::global_control> control;
  if (threads < 0) throw Error("--threads must be >= 0 (0 = all cores), got " + std::to_string(threads));
  if (threads == 0) {
    control.reset();
    return;
  }
  control = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                  static_cast<size_t>(threads));
}

std::vector<std::string> split_list(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<int> parse_positive_ints(const std::string& list, const std::string& flag) {
  std::vector<int> out;
  for (const auto& item : split_list(list)) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v <= 0) throw Error(flag + ": '" + item + "' is not a positive integer");
    out.push_back(v);
  }
  if (out.empty()) throw Error(flag + ": give at least one value");
  return out;
}

}  // namespace modiff::cli
