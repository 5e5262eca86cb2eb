#include "runtime/cuda_support.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>

#include "modiff/common/environment.h"
#include "modiff/common/error.h"

#ifdef MODIFF_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/cuda/CUDAEvent.h>
#if __has_include(<torch/csrc/autograd/profiler_kineto.h>)
#include <torch/csrc/autograd/profiler_kineto.h>
#define MODIFF_KINETO 1
#endif
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

#ifdef MODIFF_TORCH_CUDA
namespace {
// A stream of its own: not one of LibTorch's pool, which hands the same 32 streams round to every caller.
// cuBLAS keeps a workspace per stream, and a captured graph keeps the workspace of the stream it was captured
// on: two runs whose graphs were captured on one stream would share that scratch memory while their replays run
// side by side. So each run's work stays on streams no other run uses, made once per run (a new stream per phase
// would grow memory phase after phase).
c10::cuda::CUDAStream new_stream() {
  cudaStream_t raw = nullptr;
  C10_CUDA_CHECK(cudaStreamCreateWithFlags(&raw, cudaStreamNonBlocking));
  return c10::cuda::getStreamFromExternal(raw, c10::cuda::current_device());
}
std::mutex streams_mutex;
// The stream graphs are captured on, per stream they replay on (a run's own).
c10::cuda::CUDAStream capture_stream() {
  static std::map<c10::StreamId, c10::cuda::CUDAStream> streams;
  const auto current = c10::cuda::getCurrentCUDAStream();
  std::lock_guard<std::mutex> lock(streams_mutex);
  auto it = streams.find(current.id());
  if (it == streams.end()) it = streams.emplace(current.id(), new_stream()).first;
  return it->second;
}
// Side streams for parallel branches, per stream the outermost branches forked from (index 0 is the first side
// branch).
c10::cuda::CUDAStream branch_stream(c10::StreamId root, size_t index) {
  static std::map<c10::StreamId, std::vector<c10::cuda::CUDAStream>> streams;
  std::lock_guard<std::mutex> lock(streams_mutex);
  auto& mine = streams[root];
  while (mine.size() <= index) mine.push_back(new_stream());
  return mine[index];
}
}  // namespace
#endif

namespace {
std::atomic<int> scopes_beside{0};  // GradientsBesideScopes that switch it on, alive now
[[maybe_unused]] bool gradients_beside() { return scopes_beside.load() > 0; }
#ifdef MODIFF_TORCH_CUDA
// Side work is spread over a few streams: one was the step's bottleneck once the critical path got
// short (the weight gradients' products queued behind each other). Work that writes the same tensor
// stays on one of them, in order (a weight used at several places of a chain accumulates several times).
// MODIFF_SIDE_STREAMS (1-8, default 2) is a developer's knob for measuring this (docs/gpu.md).
size_t side_stream_count() { return static_cast<size_t>(side_stream_setting()); }
struct Beside {
  std::vector<c10::cuda::CUDAStream> sides;
  std::vector<bool> pending;  // work queued since the last join, per side stream
  std::map<const void*, size_t> lane_of;  // the written tensor's side stream
};
std::mutex beside_mutex;
std::map<c10::StreamId, Beside> beside_streams;  // by the stream they serve
#endif
}  // namespace

GradientsBesideScope::GradientsBesideScope(bool on) : on_(on) {
  if (on_) ++scopes_beside;
}

GradientsBesideScope::~GradientsBesideScope() {
  join_gradients_beside();
  if (on_) --scopes_beside;
}

namespace {
void run_beside_on(const std::function<void()>& work, const std::vector<torch::Tensor>& used, const torch::Tensor& writes,
                   bool own_stream) {
#ifdef MODIFF_TORCH_CUDA
  if (gradients_beside() && !used.empty() && used.front().is_cuda()) {
    const auto current = c10::cuda::getCurrentCUDAStream();
    std::unique_lock<std::mutex> lock(beside_mutex);
    Beside& beside = beside_streams[current.id()];
    // The shared side streams, then one for chains of their own (the last).
    const size_t shared = side_stream_count();
    if (beside.sides.empty()) {
      for (size_t k = 0; k <= shared; ++k) beside.sides.push_back(new_stream());
      beside.pending.assign(shared + 1, false);
    }
    size_t lane = own_stream ? shared : 0;
    if (writes.defined() && !own_stream) {
      auto it = beside.lane_of.find(writes.data_ptr());
      if (it == beside.lane_of.end()) it = beside.lane_of.emplace(writes.data_ptr(), beside.lane_of.size() % shared).first;
      lane = it->second;
    }
    const auto side = beside.sides[lane];
    beside.pending[lane] = true;
    lock.unlock();
    at::cuda::CUDAEvent fork;
    fork.record(current);
    fork.block(side);
    {
      c10::cuda::CUDAStreamGuard guard(side);
      work();
    }
    // Their memory must not be reused by the current stream before the side stream has read them.
    for (const auto& t : used) t.record_stream(side);
    return;
  }
#endif
  (void)writes;
  (void)own_stream;
  work();
}
}  // namespace

void run_beside(const std::function<void()>& work, const std::vector<torch::Tensor>& used, const torch::Tensor& writes) {
  run_beside_on(work, used, writes, false);
}

void run_beside_chain(const std::function<void()>& work, const std::vector<torch::Tensor>& used) {
  run_beside_on(work, used, {}, true);
}

void join_gradients_beside() {
#ifdef MODIFF_TORCH_CUDA
  if (!gradients_beside()) return;
  // Every stream's side work, not only the current stream's: autograd runs an operation's backward on the
  // stream its forward ran on, so a forward pass with a parallel branch (the diffusion loss's time path)
  // leaves gradients beside a stream the optimizer does not run on.
  const auto current = c10::cuda::getCurrentCUDAStream();
  std::lock_guard<std::mutex> lock(beside_mutex);
  for (auto& [served, beside] : beside_streams) {
    for (size_t k = 0; k < beside.sides.size(); ++k) {
      if (!beside.pending[k]) continue;
      at::cuda::CUDAEvent join;
      join.record(beside.sides[k]);
      join.block(current);
      beside.pending[k] = false;
    }
  }
#endif
}

void run_concurrently(torch::Device device, const std::vector<std::function<void()>>& branches) {
#ifdef MODIFF_TORCH_CUDA
  if (device.is_cuda() && branches.size() > 1) {
    // Branches inside a branch get streams of their own: on a stream shared with an enclosing
    // branch they would queue behind its work.
    static thread_local size_t depth = 0;
    static thread_local c10::StreamId root = 0;  // the stream the outermost branches forked from
    constexpr size_t kStreamsPerDepth = 8;
    const size_t first_stream = depth * kStreamsPerDepth;
    const auto current = c10::cuda::getCurrentCUDAStream();
    if (depth == 0) root = current.id();
    ++depth;
    at::cuda::CUDAEvent fork;
    fork.record(current);
    for (size_t k = 1; k < branches.size(); ++k) {
      const auto side = branch_stream(root, first_stream + (k - 1) % kStreamsPerDepth);
      fork.block(side);
      c10::cuda::CUDAStreamGuard guard(side);
      branches[k]();
    }
    branches[0]();
    --depth;
    for (size_t k = 1; k < branches.size(); ++k) {
      at::cuda::CUDAEvent join;
      join.record(branch_stream(root, first_stream + (k - 1) % kStreamsPerDepth));
      join.block(current);
    }
    return;
  }
#endif
  (void)device;
  for (const auto& branch : branches) branch();
}

void run_concurrently(torch::Device device, const std::function<void()>& first, const std::function<void()>& second) {
  run_concurrently(device, std::vector<std::function<void()>>{first, second});
}

#ifdef MODIFF_TORCH_CUDA
namespace {
// An identity whose backward pass, which LibTorch runs on its autograd thread for the device, binds the context
// there before anything else of a backward pass runs on that thread.
struct BindContextThere : torch::autograd::Function<BindContextThere> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& x) { return x.clone(); }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grads) {
    bind_cuda_context();
    return grads;
  }
};
}  // namespace
#endif

void bind_cuda_context() {
#ifdef MODIFF_TORCH_CUDA
  static thread_local bool bound = false;
  if (bound) return;
  C10_CUDA_CHECK(cudaFree(nullptr));  // a runtime call makes the device's primary context current on this thread
  bound = true;
#endif
}

void bind_cuda_contexts(torch::Device device) {
#ifdef MODIFF_TORCH_CUDA
  if (!device.is_cuda()) return;
  bind_cuda_context();
  static std::once_flag autograd_thread;
  std::call_once(autograd_thread, [&] {
    const auto x = torch::zeros({1}, torch::TensorOptions().device(device).requires_grad(true));
    BindContextThere::apply(x).sum().backward();
  });
#else
  (void)device;
#endif
}

void run_on_stream(void* stream, const std::function<void()>& work) {
#ifdef MODIFF_TORCH_CUDA
  if (stream) {
    const c10::cuda::CUDAStreamGuard guard(
        c10::cuda::getStreamFromExternal(static_cast<cudaStream_t>(stream), c10::cuda::current_device()));
    work();
    return;
  }
#endif
  (void)stream;
  work();
}

void* new_cuda_stream() {
#ifdef MODIFF_TORCH_CUDA
  return new_stream().stream();
#else
  return nullptr;
#endif
}

bool own_kernels_take(std::initializer_list<torch::Tensor> tensors) {
#ifdef MODIFF_CUDA_KERNELS
  for (const auto& t : tensors)
    if (!t.is_cuda() || t.scalar_type() != torch::kFloat32) return false;
  return true;
#else
  (void)tensors;
  return false;
#endif
}

void* current_cuda_stream() {
#ifdef MODIFF_TORCH_CUDA
  return c10::cuda::getCurrentCUDAStream().stream();
#else
  return nullptr;
#endif
}

void allow_tf32() {
#ifdef MODIFF_TORCH_CUDA
  at::globalContext().setAllowTF32CuBLAS(true);
  at::globalContext().setAllowTF32CuDNN(true);
#endif
}

#if defined(MODIFF_TORCH_CUDA) && defined(MODIFF_KINETO)
namespace {
torch::profiler::impl::ProfilerConfig trace_config() {
  return torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::KINETO);
}
const std::set<torch::profiler::impl::ActivityType> trace_activities{torch::profiler::impl::ActivityType::CPU,
                                                                     torch::profiler::impl::ActivityType::CUDA};
}  // namespace

void kernel_trace_start() {
  torch::autograd::profiler::prepareProfiler(trace_config(), trace_activities);
  torch::autograd::profiler::enableProfiler(trace_config(), trace_activities);
}

void kernel_trace_stop(const std::string& path) {
  c10::cuda::device_synchronize();
  auto result = torch::autograd::profiler::disableProfiler();
  result->save(path);
}
#else
void kernel_trace_start() {}
void kernel_trace_stop(const std::string&) {}
#endif

int graph_steps_per_replay(int preferred) {
  return graph_steps_setting().value_or(preferred);
}

struct GraphedSteps::Impl {
  std::function<void(int)> run;
  int per_replay = 1;
  bool enabled = false;
  int calls = 0;
  std::vector<at::Generator> generators;  // besides the default one
#ifdef MODIFF_TORCH_CUDA
  std::unique_ptr<at::cuda::CUDAGraph> graph;
#endif
};

GraphedSteps::GraphedSteps(std::function<void(int)> run, int per_replay, bool enabled)
    : impl_(std::make_unique<Impl>()) {
  if (per_replay < 1) throw Error("internal: a graph of fewer than one step");
  impl_->run = std::move(run);
  impl_->per_replay = per_replay;
#ifdef MODIFF_TORCH_CUDA
  impl_->enabled = enabled;
#else
  (void)enabled;
#endif
}

GraphedSteps::~GraphedSteps() = default;

void GraphedSteps::draws_from(std::vector<at::Generator> generators) {
  if (replaying()) throw Error("internal: generators named after the capture");
  impl_->generators = std::move(generators);
}

bool GraphedSteps::replaying() const {
#ifdef MODIFF_TORCH_CUDA
  return impl_->graph != nullptr;
#else
  return false;
#endif
}

void GraphedSteps::operator()(int count) {
  auto& m = *impl_;
  if (!m.enabled || count != m.per_replay) {
    m.run(count);
    join_gradients_beside();
    return;
  }
#ifdef MODIFF_TORCH_CUDA
  constexpr int kWarmup = 3;
  if (m.graph) {
    m.graph->replay();
    return;
  }
  const auto main = c10::cuda::getCurrentCUDAStream();
  const auto side = capture_stream();
  // The side stream starts after everything queued so far, and the main stream waits for it.
  auto event_main = at::cuda::CUDAEvent();
  event_main.record(main);
  event_main.block(side);
  {
    c10::cuda::CUDAStreamGuard guard(side);
    if (m.calls < kWarmup) {
      m.run(count);
      join_gradients_beside();
    } else {
      m.graph = std::make_unique<at::cuda::CUDAGraph>();
      const auto dump = graph_dump_prefix();  // a .dot file per capture, to count kernels
      if (dump) m.graph->enable_debug_mode();
      for (const auto& generator : m.generators) m.graph->register_generator_state(generator);
      m.graph->capture_begin();
      m.run(count);
      join_gradients_beside();  // every forked stream must rejoin before the capture ends
      m.graph->capture_end();
      if (dump) {
        static int index = 0;
        m.graph->debug_dump(*dump + "_" + std::to_string(index++) + ".dot");
      }
    }
  }
  auto event_side = at::cuda::CUDAEvent();
  event_side.record(side);
  event_side.block(main);
  ++m.calls;
  if (m.graph) m.graph->replay();  // capturing ran nothing: these are the steps themselves
#endif
}

}  // namespace modiff::agents
