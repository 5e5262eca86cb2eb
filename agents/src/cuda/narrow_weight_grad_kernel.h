#pragma once
// Launcher of the weight gradient of a layer with few inputs (narrow_weight_grad.cu), free of CUDA and
// torch headers: dW[:, offset : offset + count] += g^T x for g [batch, out] and x [batch, count] with
// count up to kNarrowMaxColumns. cuBLAS gives this shape (an output of a few columns, the batch as the
// summed dimension) a tiled product of one block per 32 x 32 output tile that walks the whole batch:
// 8-9 us for 256 x 11 over 512 rows on the H200, at the end of the diffusion step's backward pass (the
// first layer's observation and action columns). Here the batch is summed with its loads in flight.
namespace modiff::agents::cuda {

constexpr long kNarrowMaxColumns = 64;

// Row strides in elements; g's and x's columns contiguous. weight_grad [out, ld].
bool launch_narrow_weight_grad(const float* g, long g_stride, const float* x, long x_stride, float* weight_grad,
                               long ld, long offset, long batch, long out, long count, void* stream);

}  // namespace modiff::agents::cuda
