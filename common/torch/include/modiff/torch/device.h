#pragma once
// Resolving the user's --device choice. This header stays free of torch so
// that CLI code can parse flags without compiling LibTorch headers.
#include <string>

namespace modiff {

enum class DeviceKind { Cpu, Cuda };

struct DeviceChoice {
  DeviceKind kind = DeviceKind::Cpu;
  std::string description;  // "cpu", "cuda:0 (NVIDIA H100 ...)"
};

// "auto" picks CUDA when LibTorch sees a GPU, else the CPU; "cuda" without a
// GPU is an error naming the flag.
DeviceChoice resolve_device(const std::string& flag_value);

// Makes LibTorch's CPU results depend on the operands alone, not on the CPU, the BLAS kernel, the thread count
// or a row's neighbours (reproducible_cpu.cpp says how). Every program that runs tensor ops calls it first,
// before any of them; calling it again is harmless. CPU parallelism then comes from oneTBB (`--threads`).
void use_reproducible_cpu_arithmetic();

// How CPU products and ATen's kernels run, for `modiff info`.
std::string cpu_arithmetic_summary();

// LibTorch's version, BLAS and thread facts, for `modiff info`.
std::string torch_build_summary();

}  // namespace modiff
