#include "runtime/implementation.h"

#include "modiff/common/error.h"

namespace modiff::agents {

Implementation parse_implementation(const std::string& name) {
  if (name == "reference") return Implementation::Reference;
  if (name == "fast") return Implementation::Fast;
  throw Error("unknown implementation '" + name + "' (reference, fast)");
}

std::string implementation_name(Implementation implementation) {
  return implementation == Implementation::Reference ? "reference" : "fast";
}

Kernels Kernels::for_device(torch::Device device) {
#ifdef MODIFF_CUDA_KERNELS
  return Kernels{device.is_cuda()};
#else
  (void)device;
  return Kernels{false};
#endif
}

}  // namespace modiff::agents
