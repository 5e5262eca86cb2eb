// Fuzz target: a sweep file (TOML), parsed and planned as `modiff sweep` does before its first cell.
#include "fuzz_input.h"
#include "modiff/sweeps/sweep.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  modiff_fuzz::refuse_only_with_error([&] {
    const auto config = modiff::sweeps::parse_sweep_config(text, "fuzz.toml");
    modiff::sweeps::plan_cells(config);
  });
  return 0;
}
