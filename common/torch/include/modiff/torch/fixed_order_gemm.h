#pragma once
// Matrix products whose rounding is fixed by the operands alone: the same bits on every x86-64 CPU, at every
// thread count, whatever the BLAS library and its kernel (OPENBLAS_CORETYPE), and whatever else shares the call.
//
// Every element of a product P = A B is one chain of fused multiply-adds over k in increasing order, started
// from zero:  p_ij = fma(a_i,k-1, b_k-1,j, ... fma(a_i1, b_1j, fma(a_i0, b_0j, 0)) ...).
// The vector kernels (AVX-512, AVX2) compute 16 or 32 such chains side by side, one per column, so the width of
// the machine's vectors, the tile an element falls into, the rows beside it and the thread that computes it
// change nothing. A BLAS kernel instead splits k across registers and picks its tiles by the matrix's shape and
// the CPU, so a row's result depends on its neighbours and on the machine (docs/statistics.md).
// No torch headers: the behavior actor's inference and the LibTorch kernels of fixed_order_matmul.cpp share it.
#include <cstdint>

namespace modiff {

// A strided matrix view: element (i, j) at data[i * row_stride + j * col_stride] (strides may be 0: broadcast).
template <typename T>
struct MatrixView {
  T* data = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0, col_stride = 1;
  T& at(int64_t i, int64_t j) const { return data[i * row_stride + j * col_stride]; }
};

// out = beta * addend + alpha * (a b), elementwise; out and addend are [a.rows, b.cols] (addend may be null,
// or broadcast by zero strides, or out itself). With beta == 0 the addend is not read (as BLAS does: NaN there
// does not propagate). The product is computed in full before out is written, so out may alias any operand.
void fixed_order_gemm(MatrixView<const float> a, MatrixView<const float> b, MatrixView<float> out,
                      const MatrixView<const float>* addend, float beta, float alpha);
void fixed_order_gemm(MatrixView<const double> a, MatrixView<const double> b, MatrixView<double> out,
                      const MatrixView<const double>* addend, double beta, double alpha);

// Which kernel computes the float products. All give the same bits; the fastest the CPU runs is the default.
// Tests select each in turn to prove it.
enum class GemmKernel { Scalar, Avx2, Avx512 };
GemmKernel fastest_gemm_kernel();
bool gemm_kernel_supported(GemmKernel kernel);
void select_gemm_kernel(GemmKernel kernel);  // throws Error when the CPU cannot run it
GemmKernel selected_gemm_kernel();
const char* gemm_kernel_name(GemmKernel kernel);

}  // namespace modiff
