#pragma once
// A denoiser's time path in training, and its join into the batch. The time
// path (time features -> time MLP -> the first layer's time columns, plus its
// bias) depends on the parameters alone, so training evaluates it once per
// step value, a [T, width] table, and each row of the batch takes its step's
// row. With modiff's own kernels the join is an autograd function over modiff's kernels
// (cuda/time_path_kernels.cu) whose backward pass runs the whole time path's
// in three kernels, with the parameter gradients added into their storage
// beside the critical path, where LibTorch's composite ends every training
// step with fourteen small products and reductions (docs/benchmarks.md).
// Elsewhere the composite computes the same.
#include <torch/torch.h>

#include "runtime/implementation.h"

#include "ops/layers.h"

namespace modiff::agents {

// The time MLP's output for the step values 0 .. steps-1, [steps, out] (inference's chains use it).
torch::Tensor time_path_rows(int steps, const TimePathParams& p, const torch::TensorOptions& options, Kernels kernels);

// The first layer's time part for every step value: rows times the time columns, plus the first layer's bias.
struct StepTable {
  torch::Tensor table;  // [steps, width]; with autograd history where the composite made it
  // What the fused backward pass reads (defined only where the kernels take the path): the step values
  // and each layer's input and the activation's input.
  torch::Tensor times, features, pre, post, rows;
};
// With modiff's own kernels, and where gradients are recorded into storage for every parameter of the
// path (flat_params.h), the table the fused join takes; otherwise the composite's, with its history.
StepTable time_path_table(int steps, const TimePathParams& p, const torch::TensorOptions& options, Kernels kernels);

// data_part [B, width] + table[t] (t: step indices [B], int64): every row's first-layer input.
torch::Tensor add_step_rows(const torch::Tensor& data_part, const torch::Tensor& t, const StepTable& table,
                            const TimePathParams& p);

}  // namespace modiff::agents
