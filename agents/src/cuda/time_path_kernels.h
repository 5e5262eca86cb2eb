#pragma once
// Launchers of the kernels behind a denoiser's time path in training
// (time_path_kernels.cu, time_path.h), free of CUDA and torch headers. The time
// path is the time features through the time MLP and the first layer's time
// columns, evaluated once per step value (T rows, T = 5 by default), so its
// backward pass is a chain of matrix products on a handful of rows: cuBLAS
// spends a split-K product and its reduction on each, fourteen kernels at the
// end of every training step's critical path (docs/benchmarks.md). Here each
// layer's backward pass (input gradient, weight and bias gradients, the
// activation's derivative) is one kernel over 32 x 32 tiles of its weight, and
// the Fourier features' derivative one more: four kernels in all.
//
// A layer's input gradient leaves its kernel as partial sums, one per tile row
// of 32 outputs ([parts, rows, in]); the next kernel adds them up in order as it
// loads them, so every result is the same from run to run.
#include <cstdint>

namespace modiff::agents::cuda {

// The most step values (rows) the kernels take; longer chains use LibTorch's composite.
constexpr long kTimePathMaxRows = 16;

// The number of partial sums a layer with `out` outputs leaves for the next.
long time_path_parts(long out);

// out [batch, width] = data [batch, width] + table[t[b]] (table [steps, width]): each row's step part.
bool launch_step_rows_forward(const float* data, const float* table, const int64_t* t, float* out, long batch,
                              long width, void* stream);

// The first layer's time columns, y[b] = table[t[b]] with table = rows W[:, offset : offset + in]^T + bias:
// from y's gradient over the batch, the table's gradient per step value (kept inside the kernel), then
// dW (+)= and db (+)= into their storage (either may be null), and the rows' gradient as
// time_path_parts(out) partial sums [parts, steps, in].
struct TimePathFirstLayerBackward {
  long batch = 0, steps = 0, in = 0, out = 0, ld = 0, offset = 0;
  const float* grad = nullptr;    // [batch, out]
  const int64_t* t = nullptr;     // [batch], each in 0 .. steps-1
  const float* weight = nullptr;  // W [out, ld]
  const float* rows = nullptr;    // the layer's input [steps, in]
  float* weight_grad = nullptr;   // [out, ld]
  float* bias_grad = nullptr;     // [out]
  float* grad_rows = nullptr;     // [time_path_parts(out), steps, in]
};
bool launch_time_path_first_layer_backward(const TimePathFirstLayerBackward& layer, void* stream);

// The derivative that turns the summed gradient of an activation's output into its input's.
enum class TimePathActivation { None, Silu, Mish, Relu };

// The backward pass of y = x W^T + b over `rows` rows, where y's gradient arrives as
// partial sums [grad_out_parts, rows, out] and, where `activation` is not None, y feeds an activation whose
// input was `pre` [rows, out] (dY = the summed gradient times act'(pre)). dW (+)= dY^T x and db (+)= column
// sums of dY into their storage (either may be null); x's gradient as time_path_parts(out) partial sums
// [parts, rows, in] where grad_in is not null.
struct TimePathLayerBackward {
  long rows = 0, in = 0, out = 0;
  long grad_out_parts = 1;
  const float* grad_out = nullptr;  // [parts, rows, out]
  TimePathActivation activation = TimePathActivation::None;
  const float* pre = nullptr;       // [rows, out]
  const float* weight = nullptr;    // W [out, in]
  const float* input = nullptr;     // x [rows, in]
  float* weight_grad = nullptr;     // [out, in]
  float* bias_grad = nullptr;       // [out]
  float* grad_in = nullptr;         // [time_path_parts(out), rows, in]
};
bool launch_time_path_layer_backward(const TimePathLayerBackward& layer, void* stream);

// IDQL's Fourier features F = [cos(2 pi t W), sin(2 pi t W)] (W [half]): W's gradient from F's, which
// arrives as partial sums [parts, rows, 2 half], added into grad_w.
bool launch_time_path_fourier_backward(const float* grad_features, long parts, long rows, long half,
                                       const float* times, const float* w, float* grad_w, void* stream);

}  // namespace modiff::agents::cuda
