// Fuzz target: a guidance artifact, as `modiff eval --guidance DIR` loads it. The input is split at its first NUL
// byte: before it the manifest.json, after it the weights.pt archive, so that both parsers are reached.
#include <filesystem>
#include <fstream>

#include "io/artifact_io.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  static const fs::path dir = fs::temp_directory_path() / ("modiff_fuzz_artifact_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const size_t split = bytes.find('\0');
  std::ofstream(dir / "manifest.json", std::ios::binary) << bytes.substr(0, split);
  std::ofstream(dir / "weights.pt", std::ios::binary) << (split == std::string::npos ? "" : bytes.substr(split + 1));
  modiff_fuzz::refuse_only_with_error([&] { modiff::agents::load_guidance(dir.string(), torch::kCPU); });
  return 0;
}
