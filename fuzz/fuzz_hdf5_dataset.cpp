// Fuzz target: a D4RL-layout HDF5 dataset file, read as `modiff data info` and `train` read it.
#include "fuzz_input.h"
#include "modiff/datasets/d4rl_dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = modiff_fuzz::as_file(data, size, ".hdf5");
  modiff_fuzz::refuse_only_with_error([&] { modiff::datasets::read_d4rl_file(path); });
  return 0;
}
