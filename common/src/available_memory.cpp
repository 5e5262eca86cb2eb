#include "modiff/common/available_memory.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "modiff/common/error.h"

namespace modiff {

uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  uint64_t available_kb = 0, swap_free_kb = 0;
  bool found = false;
  for (std::string line; std::getline(in, line);) {
    std::istringstream s(line);
    std::string key;
    uint64_t kb = 0;
    s >> key >> kb;
    if (key == "MemAvailable:") available_kb = kb, found = true;
    if (key == "SwapFree:") swap_free_kb = kb;
  }
  return found ? (available_kb + swap_free_kb) * 1024 : UINT64_MAX / 2;
}

void check_fits_in_memory(const std::string& what, double bytes) {
  const double available = static_cast<double>(available_memory_bytes());
  if (bytes <= available) return;
  char msg[160];
  std::snprintf(msg, sizeof msg, " needs about %.1f GiB of memory; this machine has %.1f GiB available", bytes / 1073741824.0,
                available / 1073741824.0);
  throw Error(what + msg);
}

}  // namespace modiff
