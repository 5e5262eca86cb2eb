#pragma once
// The launcher of modiff's own Adam kernel (flat_adam.cu), free of CUDA and
// torch headers so that C++ code can call it. Built only where a CUDA compiler
// and a CUDA LibTorch are found (MODIFF_CUDA_KERNELS).
#include <cstdint>

namespace modiff::agents::cuda {

struct FlatAdamLaunch {
  float *params, *exp_avg, *exp_avg_sq;
  const float* grads;
  long n;
  float* step;                  // device scalar: the steps taken; the kernel adds this one
  unsigned int* blocks_done;    // device counter, 0 between launches (the last block writes the step)
  float lr;                     // the base learning rate
  long decay_steps;             // > 0: cosine decay from lr to 0 over that many steps, computed in the kernel
  float beta1, beta2, eps, weight_decay;  // weight_decay > 0: AdamW (decoupled)
  // Optional EMA of the parameters, updated from the new values in the same pass (nullptr: none):
  // at step t with t % ema_every == 0, ema <- ema + rate (p - ema), rate 1 (a copy) while t < ema_start.
  float* ema = nullptr;
  float ema_rate = 0;
  long ema_start = 0, ema_every = 1;
};

// Queues the update on `stream` (a cudaStream_t); false when the buffers are
// not 16-byte aligned or the launch failed (the caller then falls back).
bool launch_flat_adam(const FlatAdamLaunch& launch, void* stream);

}  // namespace modiff::agents::cuda
