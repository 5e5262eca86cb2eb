#include <tbb/global_control.h>

#include <cmath>
#include <functional>
#include <limits>
#include <type_traits>
#include <memory>
#include <sstream>

#include "commands.h"
#include "modiff/common/error.h"
#include "modiff/datasets/data_home.h"
#include "modiff/eval/evaluation.h"

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

namespace {

// The whole of `text` as a number of type T (std::stod or std::stoll), nothing left over; false otherwise.
// `out_of_range` tells a number too large for T from text that is no number.
template <typename T>
bool parse_whole(const std::string& text, T& value, bool* out_of_range = nullptr) {
  size_t used = 0;
  try {
    if constexpr (std::is_floating_point_v<T>) value = std::stod(text, &used);
    else {
      const long long v = std::stoll(text, &used);
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) throw std::out_of_range(text);
      value = static_cast<T>(v);
    }
  } catch (const std::out_of_range&) {
    if (out_of_range) *out_of_range = true;
    return false;
  } catch (const std::exception&) {
    return false;
  }
  return used != 0 && used == text.size();
}

// A validator accepting finite numbers for which `ok` holds; `wanted` says what is accepted.
CLI::Validator finite_number(const std::string& wanted, std::function<bool(double)> ok) {
  return CLI::Validator(
      [wanted, ok](std::string& text) -> std::string {
        double v = 0;
        if (!parse_whole(text, v) || !std::isfinite(v)) return "'" + text + "' is not a finite number";
        return ok(v) ? "" : "'" + text + "' is not " + wanted;
      },
      "NUMBER " + wanted);
}

}  // namespace

CLI::Validator finite_in(double lo, double hi, bool lo_open) {
  const std::string range = (lo_open ? "(" : "[") + CLI::detail::to_string(lo) + ", " + CLI::detail::to_string(hi) + "]";
  return finite_number("in " + range, [lo, hi, lo_open](double v) { return (lo_open ? v > lo : v >= lo) && v <= hi; });
}

CLI::Validator positive() { return finite_number("> 0", [](double v) { return v > 0; }); }
CLI::Validator non_negative() { return finite_number(">= 0", [](double v) { return v >= 0; }); }

CLI::Validator integer_in(long long lo, long long hi) {
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        long long v = 0;
        bool too_large = false;
        if (!parse_whole(text, v, &too_large)) return "'" + text + "' is " + (too_large ? "outside " + range : "not an integer");
        return v < lo || v > hi ? "'" + text + "' is outside " + range : "";
      },
      "INTEGER in " + range);
}

bool parse_integer(const std::string& text, long long& value) { return parse_whole(text, value); }

CLI::Validator seed_value() { return integer_in(0, std::numeric_limits<long long>::max()); }

CLI::Validator thread_count() { return integer_in(0, 4096); }

// A validator from a check that throws modiff::Error: its message becomes CLI11's reason.
CLI::Validator checked_by(std::function<void(const std::string&)> check, const std::string& description) {
  return CLI::Validator(
      [check](std::string& text) -> std::string {
        try {
          check(text);
        } catch (const Error& e) {
          return e.what();
        }
        return "";
      },
      description);
}

CLI::Validator dataset_name() {
  return checked_by([](const std::string& text) { datasets::check_dataset_name(text); }, "dataset name");
}

CLI::Validator one_of(const std::vector<std::string>& allowed) {
  std::string names;
  for (const auto& a : allowed) names += (names.empty() ? "" : ", ") + a;
  return CLI::Validator(
      [allowed, names](std::string& text) -> std::string {
        for (const auto& a : allowed)
          if (text == a) return "";
        return "'" + text + "' is not one of " + names;
      },
      "one of " + names);
}

CLI::Validator list_of(const std::vector<std::string>& allowed) {
  const CLI::Validator each = one_of(allowed);
  return CLI::Validator(
      [each](std::string& text) -> std::string {
        const auto items = split_list(text);
        if (items.empty()) return "give at least one value";
        for (size_t i = 0; i < items.size(); ++i) {
          std::string item = items[i];
          if (const std::string why = each(item); !why.empty()) return why;
          for (size_t j = 0; j < i; ++j)
            if (items[j] == items[i]) return "'" + items[i] + "' is given twice";
        }
        return "";
      },
      "comma-separated list");
}

CLI::Validator positive_int_list() {
  return checked_by([](const std::string& text) { parse_positive_ints(text, "the list"); },
                    "comma-separated positive integers");
}

CLI::Validator seed_list() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        try {
          eval::parse_seed_list(text);
        } catch (const Error& e) {
          const std::string what = e.what();
          return what.rfind("--seeds: ", 0) == 0 ? what.substr(9) : what;
        }
        return "";
      },
      "seeds like 0-4 or 0,3,7");
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
    int v = 0;
    if (!parse_whole(item, v) || v <= 0) throw Error(flag + ": '" + item + "' is not a positive integer");
    out.push_back(v);
  }
  if (!list.empty() && (list.back() == ',' || list.front() == ',' || list.find(",,") != std::string::npos))
    throw Error(flag + ": '" + list + "' has an empty item");
  if (out.empty()) throw Error(flag + ": give at least one value");
  return out;
}

}  // namespace modiff::cli
