#include "ops/layers.h"

#include <cmath>

#include "modiff/common/error.h"

namespace modiff::agents {

Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::Relu;
  if (name == "mish") return Activation::Mish;
  if (name == "silu" || name == "swish") return Activation::Silu;
  throw Error("unknown activation '" + name + "' (relu, mish, silu)");
}

std::string activation_name(Activation a) {
  switch (a) {
    case Activation::Relu: return "relu";
    case Activation::Mish: return "mish";
    case Activation::Silu: return "silu";
  }
  return "?";
}

torch::Tensor activate(Activation a, const torch::Tensor& x) {
  switch (a) {
    case Activation::Relu: return torch::relu(x);
    case Activation::Mish: return torch::mish(x);  // one fused kernel forward and backward
    case Activation::Silu: return torch::silu(x);
  }
  return x;
}

torch::Tensor sinusoidal_frequencies(int dim) {
  const int half = dim / 2;
  const double scale = std::log(10000.0) / (half - 1);
  return torch::exp(torch::arange(half, torch::kFloat32) * -scale);
}

torch::Tensor sinusoidal_embedding(const torch::Tensor& t, const torch::Tensor& frequencies) {
  auto args = t.reshape({-1, 1}) * frequencies.reshape({1, -1});
  return torch::cat({args.sin(), args.cos()}, 1);
}


}  // namespace modiff::agents
