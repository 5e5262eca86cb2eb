#include <tbb/global_control.h>

#include <memory>

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

}  // namespace modiff::cli
