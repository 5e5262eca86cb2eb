#pragma once
// What every fuzz target shares: the bytes as a file (the HDF5 and LibTorch readers take paths), and the rule
// that a parser of untrusted input may refuse it only with modiff::Error. Any other exception, a crash, a leak or
// undefined behaviour (the sanitizers) is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "modiff/common/error.h"

namespace modiff_fuzz {

// A file of this process holding `data` (rewritten on each call).
inline std::string as_file(const uint8_t* data, size_t size, const char* suffix) {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    return std::string(tmp ? tmp : "/tmp");
  }();
  const std::string path = dir + "/modiff_fuzz_" + std::to_string(::getpid()) + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

// Runs `parse`; modiff::Error is the accepted way to say no, anything else escapes to libFuzzer as a crash.
template <typename F>
void refuse_only_with_error(F&& parse) {
  try {
    parse();
  } catch (const modiff::Error&) {
  }
}

}  // namespace modiff_fuzz
