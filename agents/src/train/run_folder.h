#pragma once
// The run folder of `modiff train`: locked while a run writes it, and what a new run may replace in it.
#include <filesystem>
#include <optional>

#include "modiff/common/file_lock.h"

namespace modiff::agents {

// A second `train` into the same --out stops with one line naming the first. A folder this run made and left
// empty (it failed before writing anything) is removed again.
class RunFolder {
 public:
  explicit RunFolder(const std::filesystem::path& out);
  ~RunFolder();
  RunFolder(const RunFolder&) = delete;
  RunFolder& operator=(const RunFolder&) = delete;

 private:
  std::filesystem::path out_;
  bool made_here_;
  std::optional<ExclusiveLock> lock_;
};

// A new run needs an empty folder: an earlier run (or anything else) in it is kept unless --force says to
// replace the earlier run (then what a run writes, and only that, is removed).
void start_afresh(const std::filesystem::path& out, bool force);

}  // namespace modiff::agents
