#include "modiff/torch/device.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>

#include <torch/torch.h>
#ifdef MODIFF_TORCH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif
#include "modiff/common/error.h"

namespace modiff {

namespace {

std::string cuda_device_name() {
#ifdef MODIFF_TORCH_CUDA
  return at::cuda::getDeviceProperties(0)->name;
#else
  return "";
#endif
}

}  // namespace

DeviceChoice resolve_device(const std::string& flag_value) {
  const bool cuda_available = torch::cuda::is_available();
  DeviceChoice choice;
  if (flag_value == "cpu" || (flag_value == "auto" && !cuda_available)) {
    choice.kind = DeviceKind::Cpu;
    choice.description = "cpu";
    return choice;
  }
  if (flag_value == "cuda" || flag_value == "auto") {
    if (!cuda_available) throw Error("--device cuda: LibTorch sees no CUDA device on this machine");
    choice.kind = DeviceKind::Cuda;
    const std::string name = cuda_device_name();
    choice.description = name.empty() ? "cuda:0" : "cuda:0 (" + name + ")";
    return choice;
  }
  throw Error("--device must be auto, cpu or cuda, got '" + flag_value + "'");
}

std::string torch_build_summary() {
  std::string s = "LibTorch " + std::string(TORCH_VERSION) + "; " + cpu_arithmetic_summary() + "; CUDA " +
                  (torch::cuda::is_available() ? "available (" + std::to_string(torch::cuda::device_count()) + " devices)"
                                               : std::string("not available"));
  return s;
}

}  // namespace modiff
