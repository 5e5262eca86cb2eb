#pragma once
// Resolving the user's --device choice. This header stays free of torch so
// that CLI code can parse flags without compiling LibTorch headers.
#include <string>

namespace modiff::agents {

enum class DeviceKind { Cpu, Cuda };

struct DeviceChoice {
  DeviceKind kind = DeviceKind::Cpu;
  std::string description;  // "cpu", "cuda:0 (NVIDIA H100 ...)"
};

// "auto" picks CUDA when LibTorch sees a GPU, else the CPU; "cuda" without a
// GPU is an error naming the flag.
DeviceChoice resolve_device(const std::string& flag_value);

// LibTorch's intra-op CPU threads (0 leaves LibTorch's default: all cores).
void set_torch_threads(int threads);

// LibTorch's version, BLAS and thread facts, for `modiff info`.
std::string torch_build_summary();

}  // namespace modiff::agents
