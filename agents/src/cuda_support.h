#pragma once
// What needs LibTorch's CUDA headers, which only a CUDA build of LibTorch has
// (MODIFF_TORCH_CUDA): allocator statistics and per-device generators. On a
// CPU-only LibTorch these report 0 and make CPU generators.
#include <torch/torch.h>

#include <cstdint>

namespace modiff::agents {

long cuda_peak_allocated_bytes();
void cuda_reset_peak();

// A private random generator on `device`, seeded.
at::Generator make_generator(torch::Device device, uint64_t seed);

}  // namespace modiff::agents
