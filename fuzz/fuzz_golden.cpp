// Fuzz target: a PyBullet golden (reference trajectory) file, read as `modiff fidelity` reads it.
#include "fuzz_input.h"
#include "modiff/datasets/golden.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = modiff_fuzz::as_file(data, size, ".h5");
  modiff_fuzz::refuse_only_with_error([&] { modiff::datasets::load_reference_file(path); });
  return 0;
}
