#pragma once
// The Python the cases that craft HDF5 files with h5py run.
#include <string>

#include "modiff/common/spawn.h"

namespace modiff_test {

// A Python with h5py: Debian's /usr/bin/python3 (python3-h5py), else the python3 on PATH (the GPU machine's
// PyTorch environment has h5py, its /usr/bin/python3 has not); "" when neither has it.
inline std::string python_with_h5py() {
  static const std::string found = [] {
    modiff::SpawnOptions quiet;
    quiet.capture_stdout = true;
    quiet.stderr_file = "/dev/null";
    for (const std::string& python : {std::string("/usr/bin/python3"), modiff::find_program("python3")})
      if (!python.empty() && modiff::run_program({python, "-c", "import h5py"}, quiet).exit_code == 0) return python;
    return std::string();
  }();
  return found;
}

}  // namespace modiff_test
