#pragma once
// What a training run owns of LibTorch's process-wide machinery, so that runs trained side by side in one process
// (a group: train_group_on) each compute exactly what they would compute alone.
//
// LibTorch's ops draw their random numbers from its default CPU and CUDA generators and queue their kernels on
// the current CUDA stream; both are process-wide. A run therefore owns a CPU generator, a CUDA generator state and
// a CUDA stream of its own, seeded as torch::manual_seed(seed) would seed the defaults, and while a
// RunContext::Active lives (the run's constructor, each of its steps, its end) they stand in for the defaults:
// the CPU generator's state is copied in and back out (LibTorch's CPU generator has no shared state to swap), the
// CUDA generator's state is shared with the default one (LibTorch's graph-safe states, which CUDA graphs captured
// while it is installed keep advancing on every replay), and the run's stream is the current one, so that the
// kernels of several runs overlap on the GPU.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <optional>

namespace modiff::agents {

class RunContext {
 public:
  RunContext(uint64_t seed, torch::Device device);
  ~RunContext();
  RunContext(const RunContext&) = delete;
  RunContext& operator=(const RunContext&) = delete;

  // The run's random streams in place of the defaults, the current CUDA stream left as it is: a group's steps
  // (stacked_steps.h) draw each run's numbers, on the group's stream and inside the group's graph.
  class Draws {
   public:
    explicit Draws(RunContext& context);
    ~Draws();
    Draws(const Draws&) = delete;
    Draws& operator=(const Draws&) = delete;

   private:
    struct Saved;
    RunContext& context_;
    std::unique_ptr<Saved> saved_;
  };

  // The random streams and the run's CUDA stream in place.
  class Active {
   public:
    explicit Active(RunContext& context);
    ~Active();
    Active(const Active&) = delete;
    Active& operator=(const Active&) = delete;

   private:
    Draws draws_;
    struct Saved;
    std::unique_ptr<Saved> saved_;
  };

  // The run's CUDA generator (a graph that draws from it registers it), or nothing on the CPU.
  std::optional<at::Generator> cuda_generator() const;
  // Work queued on the current stream waits for what the run's stream holds so far (no-op on the CPU)...
  void current_stream_waits() const;
  // ... and the run's stream for what the current one holds.
  void waits_for_current_stream() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace modiff::agents
