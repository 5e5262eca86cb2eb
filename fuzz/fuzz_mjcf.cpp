// Fuzz target: an MJCF robot file, parsed as `modiff robot FILE.xml` parses it.
#include "fuzz_input.h"
#include "modiff/envs/mjcf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  modiff_fuzz::refuse_only_with_error([&] { modiff::envs::parse_mjcf(text, "fuzz.xml"); });
  return 0;
}
