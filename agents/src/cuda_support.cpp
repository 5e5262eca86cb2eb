#include "cuda_support.h"

#include "modiff/common/error.h"

#ifdef MODIFF_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/cuda/CUDAEvent.h>
#endif

namespace modiff::agents {

#ifdef MODIFF_TORCH_CUDA
long cuda_peak_allocated_bytes() {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  return static_cast<long>(stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak);
}
void cuda_reset_peak() { c10::cuda::CUDACachingAllocator::resetPeakStats(0); }
std::string cuda_device_name() { return at::cuda::getDeviceProperties(0)->name; }
#else
std::string cuda_device_name() { return ""; }
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

struct GraphedStep::Impl {
  std::function<void()> step;
  bool enabled = false;
  int calls = 0;
#ifdef MODIFF_TORCH_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  c10::optional<c10::cuda::CUDAStream> stream;
#endif
};

GraphedStep::GraphedStep(std::function<void()> step, bool enabled) : impl_(std::make_unique<Impl>()) {
  impl_->step = std::move(step);
#ifdef MODIFF_TORCH_CUDA
  impl_->enabled = enabled;
#else
  (void)enabled;
#endif
}

GraphedStep::~GraphedStep() = default;

bool GraphedStep::replaying() const {
#ifdef MODIFF_TORCH_CUDA
  return impl_->graph != nullptr;
#else
  return false;
#endif
}

void GraphedStep::operator()() {
  auto& m = *impl_;
  if (!m.enabled) {
    m.step();
    return;
  }
#ifdef MODIFF_TORCH_CUDA
  constexpr int kWarmup = 3;
  if (m.graph) {
    m.graph->replay();
    return;
  }
  if (!m.stream) m.stream = c10::cuda::getStreamFromPool();
  const auto main = c10::cuda::getCurrentCUDAStream();
  // The side stream starts after everything queued so far, and the main stream waits for it.
  auto event_main = at::cuda::CUDAEvent();
  event_main.record(main);
  event_main.block(*m.stream);
  {
    c10::cuda::CUDAStreamGuard guard(*m.stream);
    if (m.calls < kWarmup) {
      m.step();
    } else {
      m.graph = std::make_unique<at::cuda::CUDAGraph>();
      m.graph->capture_begin();
      m.step();
      m.graph->capture_end();
    }
  }
  auto event_side = at::cuda::CUDAEvent();
  event_side.record(*m.stream);
  event_side.block(main);
  ++m.calls;
  if (m.graph) m.graph->replay();  // capturing ran nothing: this is the step itself
#endif
}

}  // namespace modiff::agents
