#pragma once
// How a run's models compute, chosen once when they are built (docs/architecture.md, "Two implementations").
#include <torch/torch.h>

#include <string>

namespace modiff::agents {

// reference: the models in plain LibTorch that a reader can follow (torch::nn layers, one forward pass per
// call, autograd's backward pass, nothing captured or run beside); fast: the same functions computed in
// parts, with the accumulating layers, modiff's CUDA kernels (ops/, cuda/) and captured graphs. Both hold
// the same parameters under the same names, so an artifact trained on one loads on the other.
enum class Implementation { Reference, Fast };
Implementation parse_implementation(const std::string& name);  // reference | fast
std::string implementation_name(Implementation implementation);

// Whether a fast model's ops launch modiff's own CUDA kernels or LibTorch's composites of the same
// functions, decided once when the model is built from where it lives: the kernels where this build has
// them (MODIFF_CUDA_KERNELS) and the model is on CUDA (models are float32).
struct Kernels {
  bool own = false;
  static Kernels for_device(torch::Device device);
};

}  // namespace modiff::agents
