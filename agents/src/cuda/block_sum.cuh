#pragma once
// A thread block's sum of one float per thread, for modiff's single-block loss kernels.
#include <cuda_runtime.h>

namespace modiff::agents::cuda {

// Every thread gets the sum of `value` over the block's Threads threads (a multiple of 32).
// `shared` holds Threads / 32 floats; calls may follow each other with the same `shared`.
template <int Threads>
__device__ inline float block_sum(float value, float* shared) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // `shared` may still be read from a previous sum
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < Threads / 32; ++w) total += shared[w];
  return total;
}

}  // namespace modiff::agents::cuda
