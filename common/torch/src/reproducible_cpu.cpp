// LibTorch's CPU arithmetic made independent of the machine, the thread count and the batch layout
// (docs/statistics.md, "Same results on any machine"). Three causes, three remedies, all applied once:
//  1. Matrix products: OpenBLAS picks its kernel by CPU (or OPENBLAS_CORETYPE) and its tiles by shape and
//     threads, so a row's result depends on its neighbours and on the machine. Every CPU product LibTorch runs
//     (mm, addmm, bmm, baddbmm, addmv, dot and their out/in-place forms: nn::Linear, autograd's backward
//     products, matmul) is re-registered here onto fixed_order_gemm, whose rounding depends on the operands alone.
//  2. Vectorized ATen kernels: ATen picks AVX-512 or AVX2 builds of its reductions, random fills and
//     transcendentals by CPU; the two round differently. ATEN_CPU_CAPABILITY pins the AVX2 build on every CPU
//     that has AVX2 and FMA (all of modiff's x86-64 targets).
//  3. Floating-point modes: a library loaded into the process may switch on flush-to-zero or
//     denormals-are-zero (MXCSR), which changes the physics wherever a value falls below 1e-308. Every thread
//     that computes (the main one, oneTBB's workers as they join) runs in IEEE's default mode.
//  4. Thread-split reductions: ATen sums some reductions (LayerNorm's parameter gradients, full reductions past
//     32k elements) in per-thread partials, so the thread count changes the result. ATen runs on one intra-op
//     thread; the products, which are most of a CPU step's time, spread over oneTBB's threads instead.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/version.h>  // TORCH_VERSION_MAJOR
#include <torch/library.h>

#include <tbb/task_scheduler_observer.h>
#include <xmmintrin.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "modiff/torch/fixed_order_gemm.h"
#include "modiff/torch/device.h"

namespace modiff {
namespace {

template <typename T>
MatrixView<const T> view_of(const at::Tensor& t) {
  return {t.data_ptr<T>(), t.size(0), t.size(1), t.stride(0), t.stride(1)};
}
template <typename T>
MatrixView<T> mutable_view_of(at::Tensor& t) {
  return {t.data_ptr<T>(), t.size(0), t.size(1), t.stride(0), t.stride(1)};
}

// out = beta * addend + alpha * a b for 2-D tensors (addend already broadcast to out's shape, or undefined).
void gemm_into(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, const at::Tensor& addend, double beta,
               double alpha) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2, "matrix product: expected 2-D operands, got ", a.dim(), "-D and ",
              b.dim(), "-D");
  TORCH_CHECK(a.size(1) == b.size(0), "matrix product: shapes ", a.sizes(), " and ", b.sizes(), " do not chain");
  TORCH_CHECK(a.scalar_type() == b.scalar_type() && a.scalar_type() == out.scalar_type(),
              "matrix product: operands of different types (", a.scalar_type(), ", ", b.scalar_type(), ")");
  if (out.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "modiff_fixed_order_gemm", [&] {
    const MatrixView<const scalar_t> add = addend.defined() ? view_of<scalar_t>(addend) : MatrixView<const scalar_t>{};
    fixed_order_gemm(view_of<scalar_t>(a), view_of<scalar_t>(b), mutable_view_of<scalar_t>(out),
                     addend.defined() ? &add : nullptr, static_cast<scalar_t>(beta), static_cast<scalar_t>(alpha));
  });
}

void resize_to(at::Tensor& out, at::IntArrayRef sizes) {
  if (out.sizes() != sizes) out.resize_(sizes);
}

// --- mm / addmm -------------------------------------------------------------------------------------------
at::Tensor& mm_out(const at::Tensor& self, const at::Tensor& mat2, at::Tensor& out) {
  resize_to(out, {self.size(0), mat2.size(1)});
  gemm_into(out, self, mat2, at::Tensor(), 0.0, 1.0);
  return out;
}
at::Tensor mm(const at::Tensor& self, const at::Tensor& mat2) {
  at::Tensor out = at::empty({self.size(0), mat2.size(1)}, self.options());
  return mm_out(self, mat2, out);
}
at::Tensor& addmm_out(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const at::Scalar& beta,
                      const at::Scalar& alpha, at::Tensor& out) {
  const at::Tensor addend = self.expand({mat1.size(0), mat2.size(1)});
  resize_to(out, {mat1.size(0), mat2.size(1)});
  gemm_into(out, mat1, mat2, addend, beta.toDouble(), alpha.toDouble());
  return out;
}
at::Tensor addmm(const at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const at::Scalar& beta,
                 const at::Scalar& alpha) {
  at::Tensor out = at::empty({mat1.size(0), mat2.size(1)}, mat1.options());
  return addmm_out(self, mat1, mat2, beta, alpha, out);
}
at::Tensor& addmm_(at::Tensor& self, const at::Tensor& mat1, const at::Tensor& mat2, const at::Scalar& beta,
                   const at::Scalar& alpha) {
  gemm_into(self, mat1, mat2, self, beta.toDouble(), alpha.toDouble());
  return self;
}

// --- bmm / baddbmm: one fixed-order product per batch entry -----------------------------------------------
at::Tensor& baddbmm_out(const at::Tensor& self, const at::Tensor& batch1, const at::Tensor& batch2,
                        const at::Scalar& beta, const at::Scalar& alpha, at::Tensor& out) {
  TORCH_CHECK(batch1.dim() == 3 && batch2.dim() == 3, "batched product: expected 3-D operands");
  TORCH_CHECK(batch1.size(0) == batch2.size(0), "batched product: batch sizes differ");
  const int64_t batches = batch1.size(0), m = batch1.size(1), n = batch2.size(2);
  const at::Tensor addend = self.defined() ? self.expand({batches, m, n}) : at::Tensor();
  resize_to(out, {batches, m, n});
  for (int64_t i = 0; i < batches; ++i) {
    at::Tensor out_i = out.select(0, i);
    gemm_into(out_i, batch1.select(0, i), batch2.select(0, i), addend.defined() ? addend.select(0, i) : at::Tensor(),
              addend.defined() ? beta.toDouble() : 0.0, alpha.toDouble());
  }
  return out;
}
at::Tensor baddbmm(const at::Tensor& self, const at::Tensor& batch1, const at::Tensor& batch2, const at::Scalar& beta,
                   const at::Scalar& alpha) {
  at::Tensor out = at::empty({batch1.size(0), batch1.size(1), batch2.size(2)}, batch1.options());
  return baddbmm_out(self, batch1, batch2, beta, alpha, out);
}
at::Tensor& baddbmm_(at::Tensor& self, const at::Tensor& batch1, const at::Tensor& batch2, const at::Scalar& beta,
                     const at::Scalar& alpha) {
  return baddbmm_out(self, batch1, batch2, beta, alpha, self);
}
at::Tensor& bmm_out(const at::Tensor& self, const at::Tensor& mat2, at::Tensor& out) {
  return baddbmm_out(at::Tensor(), self, mat2, 0, 1, out);
}
at::Tensor bmm(const at::Tensor& self, const at::Tensor& mat2) {
  at::Tensor out = at::empty({self.size(0), self.size(1), mat2.size(2)}, self.options());
  return bmm_out(self, mat2, out);
}

// --- addmv / dot: a vector is a one-column matrix ---------------------------------------------------------
at::Tensor& addmv_out(const at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec, const at::Scalar& beta,
                      const at::Scalar& alpha, at::Tensor& out) {
  TORCH_CHECK(mat.dim() == 2 && vec.dim() == 1, "matrix-vector product: expected a matrix and a vector");
  resize_to(out, {mat.size(0)});
  at::Tensor out_column = out.unsqueeze(1);
  gemm_into(out_column, mat, vec.unsqueeze(1), self.expand({mat.size(0)}).unsqueeze(1), beta.toDouble(),
            alpha.toDouble());
  return out;
}
at::Tensor addmv(const at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec, const at::Scalar& beta,
                 const at::Scalar& alpha) {
  at::Tensor out = at::empty({mat.size(0)}, mat.options());
  return addmv_out(self, mat, vec, beta, alpha, out);
}
at::Tensor& addmv_(at::Tensor& self, const at::Tensor& mat, const at::Tensor& vec, const at::Scalar& beta,
                   const at::Scalar& alpha) {
  return addmv_out(self, mat, vec, beta, alpha, self);
}
at::Tensor dot(const at::Tensor& self, const at::Tensor& other) {
  TORCH_CHECK(self.dim() == 1 && other.dim() == 1 && self.size(0) == other.size(0), "dot: expected two equal vectors");
  at::Tensor out = at::empty({1, 1}, self.options());
  gemm_into(out, self.unsqueeze(0), other.unsqueeze(1), at::Tensor(), 0.0, 1.0);
  return out.reshape({});
}

// Re-registering an ATen kernel makes LibTorch warn once per operator; the override is intended.
struct QuietWarnings : c10::WarningHandler {
#if TORCH_VERSION_MAJOR >= 2
  void process(const c10::Warning&) override {}
#else
  void process(const c10::SourceLocation&, const std::string&, const bool) override {}
#endif
};
#if TORCH_VERSION_MAJOR >= 2
using WarningHandlerGuard = c10::WarningUtils::WarningHandlerGuard;
#else
using WarningHandlerGuard = c10::Warning::WarningHandlerGuard;
#endif

void register_fixed_order_products() {
  static QuietWarnings quiet;
  WarningHandlerGuard guard(&quiet);
  static torch::Library library(torch::Library::IMPL, "aten", c10::DispatchKey::CPU, __FILE__, __LINE__);
  library.impl("mm", TORCH_FN(mm));
  library.impl("mm.out", TORCH_FN(mm_out));
  library.impl("addmm", TORCH_FN(addmm));
  library.impl("addmm.out", TORCH_FN(addmm_out));
  library.impl("addmm_", TORCH_FN(addmm_));
  library.impl("bmm", TORCH_FN(bmm));
  library.impl("bmm.out", TORCH_FN(bmm_out));
  library.impl("baddbmm", TORCH_FN(baddbmm));
  library.impl("baddbmm.out", TORCH_FN(baddbmm_out));
  library.impl("baddbmm_", TORCH_FN(baddbmm_));
  library.impl("addmv", TORCH_FN(addmv));
  library.impl("addmv.out", TORCH_FN(addmv_out));
  library.impl("addmv_", TORCH_FN(addmv_));
  library.impl("dot", TORCH_FN(dot));
}

// MXCSR with every exception masked, round to nearest, no flush-to-zero, no denormals-are-zero.
constexpr unsigned kIeeeDefaultMxcsr = 0x1F80;
unsigned mxcsr_at_start = 0;
const char* aten_capability = "LibTorch's choice";  // what use_reproducible_cpu_arithmetic pinned

struct IeeeModeOnWorkers : tbb::task_scheduler_observer {
  IeeeModeOnWorkers() { observe(true); }
  void on_scheduler_entry(bool) override { _mm_setcsr(kIeeeDefaultMxcsr); }
};

}  // namespace

void use_reproducible_cpu_arithmetic() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Read by ATen when it first dispatches a vectorized kernel, so this runs before any tensor op.
    aten_capability = gemm_kernel_supported(GemmKernel::Avx2) ? "avx2" : "default";
    setenv("ATEN_CPU_CAPABILITY", aten_capability, 1);
    register_fixed_order_products();
    mxcsr_at_start = _mm_getcsr();
    static IeeeModeOnWorkers* workers = new IeeeModeOnWorkers;  // never destroyed: workers join until exit
    (void)workers;
  });
  _mm_setcsr(kIeeeDefaultMxcsr);
  at::set_num_threads(1);
}

static std::string mxcsr_hex(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

std::string cpu_arithmetic_summary() {
  return std::string("products: modiff fixed-order (") + gemm_kernel_name(selected_gemm_kernel()) +
         " kernel); ATen kernels: " + aten_capability +
         "; ATen intra-op threads: " + std::to_string(at::get_num_threads()) + "; MXCSR " + mxcsr_hex(_mm_getcsr()) +
         " (at start " + mxcsr_hex(mxcsr_at_start) + ")";
}

}  // namespace modiff
