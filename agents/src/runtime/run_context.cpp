#include "runtime/run_context.h"

#include <optional>

#include "modiff/common/error.h"
#include "runtime/cuda_support.h"

#ifdef MODIFF_TORCH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/cuda/CUDAEvent.h>
#endif

namespace modiff::agents {

struct RunContext::Impl {
  torch::Device device;
  at::Generator cpu;  // holds the run's CPU state between its active spans
#ifdef MODIFF_TORCH_CUDA
  std::optional<at::Generator> cuda;          // its CUDA state, shared with the default generator while active
  std::optional<c10::cuda::CUDAStream> stream;
#endif
};

RunContext::RunContext(uint64_t seed, torch::Device device)
    : impl_(std::make_unique<Impl>(Impl{device, at::detail::createCPUGenerator(seed)})) {
#ifdef MODIFF_TORCH_CUDA
  if (device.is_cuda()) {
    bind_cuda_contexts(device);
    impl_->cuda = make_generator(device, seed);
    const c10::cuda::CUDAGuard on_device(device);
    impl_->stream = c10::cuda::getStreamFromExternal(static_cast<cudaStream_t>(new_cuda_stream()),
                                                     device.index() < 0 ? 0 : device.index());
  }
#endif
}

RunContext::~RunContext() = default;

struct RunContext::Draws::Saved {
  torch::Tensor cpu_state;
#ifdef MODIFF_TORCH_CUDA
  std::optional<at::Generator> cuda;  // the default CUDA generator's own state, put back at the end
#endif
};

namespace {
#ifdef MODIFF_TORCH_CUDA
at::Generator default_cuda_generator(torch::Device device) {
  return at::cuda::detail::getDefaultCUDAGenerator(device.index() < 0 ? 0 : device.index());
}
#endif
}  // namespace

RunContext::Draws::Draws(RunContext& context) : context_(context), saved_(std::make_unique<Saved>()) {
  auto& run = *context_.impl_;
  at::Generator cpu_default = at::detail::getDefaultCPUGenerator();  // a handle: setting its state sets the default's
  saved_->cpu_state = cpu_default.get_state();
  cpu_default.set_state(run.cpu.get_state());
#ifdef MODIFF_TORCH_CUDA
  if (run.cuda) {
    at::Generator cuda_default = default_cuda_generator(run.device);
    saved_->cuda = cuda_default.graphsafe_get_state();
    cuda_default.graphsafe_set_state(*run.cuda);
  }
#endif
}

RunContext::Draws::~Draws() {
  auto& run = *context_.impl_;
  at::Generator cpu_default = at::detail::getDefaultCPUGenerator();
  run.cpu.set_state(cpu_default.get_state());
  cpu_default.set_state(saved_->cpu_state);
#ifdef MODIFF_TORCH_CUDA
  if (run.cuda) default_cuda_generator(run.device).graphsafe_set_state(*saved_->cuda);
#endif
}

struct RunContext::Active::Saved {
#ifdef MODIFF_TORCH_CUDA
  std::optional<c10::cuda::CUDAStreamGuard> stream;
#endif
};

RunContext::Active::Active(RunContext& context) : draws_(context), saved_(std::make_unique<Saved>()) {
#ifdef MODIFF_TORCH_CUDA
  if (context.impl_->stream) saved_->stream.emplace(*context.impl_->stream);
#endif
}

RunContext::Active::~Active() = default;

std::optional<at::Generator> RunContext::cuda_generator() const {
#ifdef MODIFF_TORCH_CUDA
  return impl_->cuda;
#else
  return std::nullopt;
#endif
}

void RunContext::current_stream_waits() const {
#ifdef MODIFF_TORCH_CUDA
  if (!impl_->stream) return;
  at::cuda::CUDAEvent done;
  done.record(*impl_->stream);
  done.block(c10::cuda::getCurrentCUDAStream());
#endif
}

void RunContext::waits_for_current_stream() const {
#ifdef MODIFF_TORCH_CUDA
  if (!impl_->stream) return;
  at::cuda::CUDAEvent done;
  done.record(c10::cuda::getCurrentCUDAStream());
  done.block(*impl_->stream);
#endif
}

}  // namespace modiff::agents
