#include "cuda_support.h"

#include "modiff/common/error.h"

#ifdef MODIFF_TORCH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace modiff::agents {

#ifdef MODIFF_TORCH_CUDA
long cuda_peak_allocated_bytes() {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  return static_cast<long>(stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak);
}
void cuda_reset_peak() { c10::cuda::CUDACachingAllocator::resetPeakStats(0); }
#else
long cuda_peak_allocated_bytes() { return 0; }
void cuda_reset_peak() {}
#endif

at::Generator make_generator(torch::Device device, uint64_t seed) {
  if (device.is_cuda()) {
#ifdef MODIFF_TORCH_CUDA
    auto gen = at::cuda::detail::createCUDAGenerator(device.index() < 0 ? 0 : device.index());
    gen.set_current_seed(seed);
    return gen;
#else
    throw Error("this LibTorch has no CUDA support");
#endif
  }
  return at::detail::createCPUGenerator(seed);
}

}  // namespace modiff::agents
