#include <tbb/global_control.h>

#include <cmath>
#include <limits>
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

CLI::Validator finite_in(double lo, double hi, bool lo_open) {
  const std::string range = (lo_open ? "(" : "[") + CLI::detail::to_string(lo) + ", " + CLI::detail::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi, lo_open, range](std::string& value) -> std::string {
        size_t used = 0;
        double v = 0;
        try {
          v = std::stod(value, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != value.size() || !std::isfinite(v)) return "'" + value + "' is not a finite number";
        if (v < lo || (lo_open && v == lo) || v > hi) return "'" + value + "' is outside " + range;
        return "";
      },
      "NUMBER in " + range);
}

CLI::Validator positive() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        const std::string why = finite_in(0, std::numeric_limits<double>::max(), true)(value);
        return why.empty() ? "" : "'" + value + "' is not a finite number > 0";
      },
      "NUMBER > 0");
}

CLI::Validator non_negative() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        const std::string why = finite_in(0, std::numeric_limits<double>::max())(value);
        return why.empty() ? "" : "'" + value + "' is not a finite number >= 0";
      },
      "NUMBER >= 0");
}

CLI::Validator integer_in(long long lo, long long hi) {
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi, range](std::string& value) -> std::string {
        size_t used = 0;
        long long v = 0;
        try {
          v = std::stoll(value, &used);
        } catch (const std::out_of_range&) {
          return "'" + value + "' is outside " + range;
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != value.size()) return "'" + value + "' is not an integer";
        if (v < lo || v > hi) return "'" + value + "' is outside " + range;
        return "";
      },
      "INTEGER in " + range);
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
