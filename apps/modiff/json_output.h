#pragma once
// JSON pieces that several commands print the same way.
#include <nlohmann/json.hpp>

#include "modiff/common/summary.h"

namespace modiff::cli {

// {"mean", "std", "min", "max"}, as the issues specify for returns and lengths.
inline nlohmann::json summary_json(const Summary& s) {
  return {{"mean", s.mean}, {"std", s.std}, {"min", s.min}, {"max", s.max}};
}

}  // namespace modiff::cli
