#pragma once
// What needs LibTorch's CUDA headers, which only a CUDA build of LibTorch has
// (MODIFF_TORCH_CUDA): allocator statistics and per-device generators. On a
// CPU-only LibTorch these report 0 and make CPU generators.
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace modiff::agents {

long cuda_peak_allocated_bytes();
void cuda_reset_peak();

// A private random generator on `device`, seeded.
at::Generator make_generator(torch::Device device, uint64_t seed);

// Runs training steps through a CUDA graph of `per_replay` consecutive steps: the first calls run them
// eagerly on a side stream (warm-up: lazy initialisations, gradient buffers), the next one captures
// them, and every call after replays the captured kernels, which removes the per-kernel launch cost
// that dominates small networks, and between the captured steps the launch gap of a replay. `run(n)`
// runs n steps; it must not synchronize with the host or branch on device values, and must draw its
// randomness from LibTorch's default CUDA generator. A call for fewer steps than per_replay (the end
// of a logging interval) runs them eagerly. Where LibTorch has no CUDA, or `enabled` is false, every
// call runs eagerly.
// Runs `first` and `second`; on CUDA `second` runs on a side stream
// concurrently with `first` (inside a captured graph: two parallel branches).
// They must not touch the same tensors. On the CPU: first, then second.
void run_concurrently(torch::Device device, const std::function<void()>& first, const std::function<void()>& second);
// The same for any number of branches: the first on the current stream, each other on its own side stream.
void run_concurrently(torch::Device device, const std::vector<std::function<void()>>& branches);

// Gradient accumulation beside the critical path. A linear layer's backward pass computes the input's
// gradient (which the next layer down waits for) and its own weight and bias gradients (which only the
// optimizer waits for). While a GradientsBesideScope that switches it on lives (a training run of the fast
// implementation on CUDA holds one), the accumulating linear layers (linear_accumulate.h) queue the latter
// on a side stream of the current stream, after everything on it so far, so that they overlap the rest of
// the backward pass; whoever reads gradients first calls join_gradients_beside() (the optimizer step and
// the end of a parallel branch do). Otherwise `work` simply runs.
// The switch is process-wide, not per thread, because LibTorch runs backward passes on its own device
// threads: it is on while at least one scope that switches it on lives (the runs of a group each hold one, and
// end in any order).
class GradientsBesideScope {
 public:
  explicit GradientsBesideScope(bool on);
  ~GradientsBesideScope();
  GradientsBesideScope(const GradientsBesideScope&) = delete;
  GradientsBesideScope& operator=(const GradientsBesideScope&) = delete;

 private:
  bool on_;
};
// `used`: the tensors the work reads; `writes`: the one it writes, if any (work writing the same tensor
// runs in order; other work may run on other side streams).
void run_beside(const std::function<void()>& work, const std::vector<torch::Tensor>& used,
                const torch::Tensor& writes = {});
// The same for a chain of dependent kernels (a layer's gradients feeding the next layer's): on a side
// stream of its own, so that neither it nor the gradient products queued beside wait for each other.
void run_beside_chain(const std::function<void()>& work, const std::vector<torch::Tensor>& used);
void join_gradients_beside();

// True where modiff's own CUDA kernels are built (MODIFF_CUDA_KERNELS) and every tensor is float32 on CUDA.
// Only the accumulating layers' backward pass asks (linear_accumulate.cpp): it has no model to take the
// choice from (Kernels, made when a model is built), and runs only in the fast implementation.
bool own_kernels_take(std::initializer_list<torch::Tensor> tensors);

// cuBLAS, called on a thread where no CUDA runtime call has run yet, finds no current context and says so on
// stderr ("Attempting to run cuBLAS, but there was no current CUDA context!") before binding one itself: LibTorch's
// autograd thread for a device starts so (its device looks set, so it never sets it). bind_cuda_context() makes the
// device's primary context current on the calling thread (once per thread); bind_cuda_contexts(device) does it
// here and, once per process, on the autograd thread (a tiny backward pass whose first node does it). Every run
// and every CUDA policy calls it first.
void bind_cuda_context();
void bind_cuda_contexts(torch::Device device);

// A CUDA stream no one else uses (cudaStream_t, on the current device; never destroyed: made once per run).
// nullptr without CUDA.
void* new_cuda_stream();

// Runs `work` with `stream` (a cudaStream_t from new_cuda_stream) as the current CUDA stream; just runs it where
// the stream is null (CPU, no CUDA).
void run_on_stream(void* stream, const std::function<void()>& work);

// The current CUDA stream as a cudaStream_t (for modiff's own kernels); nullptr without CUDA.
void* current_cuda_stream();

// Allows TF32 tensor-core matrix products on CUDA (10-bit mantissa inputs, fp32
// accumulation), as JAX does by default on these GPUs.
void allow_tf32();

// A developer's kernel trace: with MODIFF_PROFILE_TRACE=PREFIX set, the
// trainer records steps 201..220 (to a whole number of graphs) of each phase with LibTorch's Kineto profiler
// (CUDA kernels included, also those replayed from a graph) into
// PREFIX_<phase>.json (Chrome trace format). No-op without CUDA or Kineto.
void kernel_trace_start();
void kernel_trace_stop(const std::string& path);

// Steps per captured graph in training on CUDA: MODIFF_GRAPH_STEPS (1-64), a developer's knob
// (docs/gpu.md); otherwise `preferred` (the algorithm's). Any other value stops with one error line.
int graph_steps_per_replay(int preferred);

class GraphedSteps {
 public:
  GraphedSteps(std::function<void(int)> run, int per_replay, bool enabled);
  ~GraphedSteps();
  void operator()(int count);
  bool replaying() const;
  // Generators besides the default one that `run` draws from (a group's runs' own, installed in turn as the
  // default's state while it runs: RunContext::Draws), which the captured graph must then advance too.
  void draws_from(std::vector<at::Generator> generators);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace modiff::agents
