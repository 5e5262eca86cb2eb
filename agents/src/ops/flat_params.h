#pragma once
// All parameters of a module in one contiguous tensor, the parameters being
// views into it. Optimizer steps, gradient clipping, EMA and Polyak updates
// and checkpoints then cost a handful of whole-tensor kernels however many
// layers the network has (the eager loop of small networks is launch-bound),
// and nothing in an update needs the host: the learning rate and the step
// count live on the device, so an update can be captured in a CUDA graph.
#include <torch/torch.h>

namespace modiff::agents {

struct FlatParams {
  torch::Tensor values;  // [n]
  torch::Tensor grads;   // [n]; the parameters' .grad are views of it (undefined when frozen)
};

// Moves the module's parameters into one flat tensor (on the device they are
// on). With `trainable`, also gives them flat gradient storage; otherwise the
// parameters stop requiring gradients (a frozen module or a target copy).
FlatParams flatten_parameters(torch::nn::Module& module, bool trainable);

// Moves the module's flat parameters `p` (made by flatten_parameters) into `values` and, where `p` has gradient
// storage, `grads`: contiguous [n] tensors the caller owns (a row of a group's stacked tensor, nets/stacked.h).
// The current values and gradients are copied; the parameters and their .grad become views of the new storage.
void move_parameters(torch::nn::Module& module, FlatParams& p, const torch::Tensor& values, const torch::Tensor& grads);

// Sets every gradient to zero in place (autograd then accumulates into the views).
void zero_grads(FlatParams& p);

// Scales gradients so that their global L2 norm is at most max_norm; returns
// the norm before clipping as a device tensor (no host sync).
torch::Tensor clip_grad_norm(FlatParams& p, double max_norm);

// target <- target + rate * (source - target) (Polyak averaging, EMA); rate may be a device tensor.
void blend_into(FlatParams& target, const FlatParams& source, double rate);
void blend_into(FlatParams& target, const FlatParams& source, const torch::Tensor& rate);

// Adam (Kingma & Ba) or AdamW (decoupled weight decay), with an optional
// cosine decay of the learning rate to zero over decay_steps and optional
// gradient-norm clipping, on one FlatParams.
struct AdamConfig {
  double lr = 3e-4;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0;  // > 0: AdamW
  long decay_steps = 0;     // > 0: cosine decay over that many steps
  double max_grad_norm = 0; // > 0: clip before the step
};

// An exponential moving average that follows the parameters, updated right after each optimizer step
// t (1-based): when t % every == 0, ema <- ema + rate (params - ema), a plain copy while t < start.
struct EmaRule {
  double rate = 0.001;
  long start = 0;
  long every = 1;
};

class FlatAdam {
 public:
  FlatAdam(FlatParams& params, const AdamConfig& config);
  // After each step, also `ema` by `rule` (on CUDA in the same kernel as the update: the step's count
  // lives on the device, so a captured graph of several steps applies the rule of each).
  void follow_with_ema(FlatParams& ema, const EmaRule& rule);
  // One update from the current gradients (clipped first when max_grad_norm > 0), then the EMA.
  void step();
  // After move_parameters: forgets the views it made of the old storage.
  void parameters_moved() { slices_ = Slices(); }
  // Optimizer state by name, for checkpoints (m, v, step).
  std::vector<std::pair<std::string, torch::Tensor>> state();
  long state_bytes() const;

 private:
  torch::Tensor learning_rate() const;
  void update_ema();  // the EMA rule outside modiff's kernel
  FlatParams& params_;
  AdamConfig config_;
  torch::Tensor m_, v_, step_, constant_lr_;
  torch::Tensor blocks_done_;  // modiff's kernel's counter of finished blocks (CUDA)
  FlatParams* ema_ = nullptr;
  EmaRule ema_rule_;
  struct Slices {
    std::vector<torch::Tensor> values, grads, m, v, steps;
  } slices_;  // views for LibTorch's fused kernel on CUDA
};

}  // namespace modiff::agents
