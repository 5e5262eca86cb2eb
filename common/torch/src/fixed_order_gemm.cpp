// Fixed-order matrix products (see the header). Built with -ffp-contract=off (agents/CMakeLists.txt): every
// fused multiply-add here is written out, none is left to the compiler, so each kernel performs exactly the
// chain the header promises.
#include "modiff/torch/fixed_order_gemm.h"

#include <immintrin.h>
#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <cmath>
#include <vector>

#include "modiff/common/error.h"

namespace modiff {
namespace {

constexpr int64_t kPanel = 16;     // columns of B per packed panel: one AVX-512 register, two AVX2 registers
constexpr int kRowsPerTile = 6;    // rows of A per micro-tile: 12 accumulators with two panels (AVX-512)

// B [k, n] packed into panels of 16 columns, each [k][16] contiguous, zero-padded past n. The loops run along
// B's contiguous direction (a transposed weight is read row by row).
// The buffer is the calling thread's and only grows: a fresh allocation per product cost page faults (the
// kernel zeroing pages was 16% of a dataset build's time).
const float* pack_panels(const MatrixView<const float>& b) {
  const int64_t k = b.rows, n = b.cols, panels = (n + kPanel - 1) / kPanel;
  thread_local std::vector<float> packed;
  if (packed.size() < static_cast<size_t>(panels * k * kPanel)) packed.resize(static_cast<size_t>(panels * k * kPanel));
  for (int64_t p = 0; p < panels; ++p) {
    float* dst = packed.data() + p * k * kPanel;
    const int64_t width = std::min(kPanel, n - p * kPanel);
    if (b.row_stride == 1 && b.col_stride != 1) {
      for (int64_t c = 0; c < width; ++c) {
        const float* column = &b.at(0, p * kPanel + c);
        for (int64_t kk = 0; kk < k; ++kk) dst[kk * kPanel + c] = column[kk];
      }
    } else {
      for (int64_t kk = 0; kk < k; ++kk)
        for (int64_t c = 0; c < width; ++c) dst[kk * kPanel + c] = b.at(kk, p * kPanel + c);
    }
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t c = width; c < kPanel; ++c) dst[kk * kPanel + c] = 0.0f;
  }
  return packed.data();
}

// One tile: `rows` rows of A against `panels` consecutive packed panels (1 or 2), its products written into a
// small buffer (`prod`, row stride `prod_stride`). The reference kernel: each accumulator a plain float chain.
struct Tile {
  const float* a;              // A's element (row0, 0); element (r, kk) of the tile at a[r * a_row + kk * a_k]
  int64_t a_row, a_k;          // A's strides: a transposed A is read in place
  const float* panel;          // the first packed panel of this tile
  int64_t k;
  float* prod;                 // the tile's products
  int64_t prod_stride;         // their row stride
  int rows, panels;
};

void tile_scalar(const Tile& t) {
  float acc[kRowsPerTile][2 * kPanel] = {};
  const int width = t.panels * static_cast<int>(kPanel);
  for (int64_t kk = 0; kk < t.k; ++kk)
    for (int r = 0; r < t.rows; ++r) {
      const float a = t.a[r * t.a_row + kk * t.a_k];
      for (int c = 0; c < width; ++c) {
        const float b = t.panel[(c / kPanel) * t.k * kPanel + kk * kPanel + c % kPanel];
        acc[r][c] = std::fma(a, b, acc[r][c]);
      }
    }
  for (int r = 0; r < t.rows; ++r)
    for (int c = 0; c < width; ++c) t.prod[r * t.prod_stride + c] = acc[r][c];
}

template <int Rows>
__attribute__((target("avx2,fma"))) void tile_avx2_rows(const Tile& t) {
  // One panel (16 columns) as two 8-lane halves per row; a second panel is a second pass.
  for (int p = 0; p < t.panels; ++p) {
    const float* panel = t.panel + p * t.k * kPanel;
    __m256 lo[Rows], hi[Rows];
    for (int r = 0; r < Rows; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
    for (int64_t kk = 0; kk < t.k; ++kk) {
      const __m256 b0 = _mm256_loadu_ps(panel + kk * kPanel);
      const __m256 b1 = _mm256_loadu_ps(panel + kk * kPanel + 8);
      for (int r = 0; r < Rows; ++r) {
        const __m256 a = _mm256_broadcast_ss(t.a + r * t.a_row + kk * t.a_k);
        lo[r] = _mm256_fmadd_ps(a, b0, lo[r]);
        hi[r] = _mm256_fmadd_ps(a, b1, hi[r]);
      }
    }
    for (int r = 0; r < Rows; ++r) {
      _mm256_storeu_ps(t.prod + r * t.prod_stride + p * kPanel, lo[r]);
      _mm256_storeu_ps(t.prod + r * t.prod_stride + p * kPanel + 8, hi[r]);
    }
  }
}

template <int Rows, int Panels>
__attribute__((target("avx512f"))) void tile_avx512_rows_panels(const Tile& t) {
  __m512 acc[Rows][Panels];
  for (int r = 0; r < Rows; ++r)
    for (int p = 0; p < Panels; ++p) acc[r][p] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < t.k; ++kk) {
    __m512 b[Panels];
    for (int p = 0; p < Panels; ++p) b[p] = _mm512_loadu_ps(t.panel + p * t.k * kPanel + kk * kPanel);
    for (int r = 0; r < Rows; ++r) {
      const __m512 a = _mm512_set1_ps(t.a[r * t.a_row + kk * t.a_k]);
      for (int p = 0; p < Panels; ++p) acc[r][p] = _mm512_fmadd_ps(a, b[p], acc[r][p]);
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int p = 0; p < Panels; ++p) _mm512_storeu_ps(t.prod + r * t.prod_stride + p * kPanel, acc[r][p]);
}

template <int Rows>
void tile_avx512_rows(const Tile& t) {
  if (t.panels == 2) tile_avx512_rows_panels<Rows, 2>(t);
  else tile_avx512_rows_panels<Rows, 1>(t);
}

using TileFn = void (*)(const Tile&);

template <template <int> class Fn>
TileFn by_rows(int rows) {
  switch (rows) {
    case 1: return Fn<1>::run;
    case 2: return Fn<2>::run;
    case 3: return Fn<3>::run;
    case 4: return Fn<4>::run;
    case 5: return Fn<5>::run;
    default: return Fn<6>::run;
  }
}
template <int R>
struct Avx2Tile {
  static void run(const Tile& t) { tile_avx2_rows<R>(t); }
};
template <int R>
struct Avx512Tile {
  static void run(const Tile& t) { tile_avx512_rows<R>(t); }
};

TileFn tile_function(GemmKernel kernel, int rows) {
  switch (kernel) {
    case GemmKernel::Avx512: return by_rows<Avx512Tile>(rows);
    case GemmKernel::Avx2: return by_rows<Avx2Tile>(rows);
    case GemmKernel::Scalar: break;
  }
  return tile_scalar;
}

std::atomic<GemmKernel>& kernel_in_use() {
  static std::atomic<GemmKernel> k{fastest_gemm_kernel()};
  return k;
}

// The epilogue of one tile: out = beta * addend + alpha * p for its rows and valid columns.
template <typename T>
struct Epilogue {
  MatrixView<T> out;
  const MatrixView<const T>* addend;
  T beta, alpha;

  void store(const T* prod, int64_t prod_stride, int64_t row0, int64_t rows, int64_t col0, int64_t cols) const {
    const bool plain = alpha == T(1) && (beta == T(0) || !addend);
    for (int64_t r = 0; r < rows; ++r) {
      const T* p = prod + r * prod_stride;
      const int64_t i = row0 + r;
      if (plain && out.col_stride == 1) {
        std::copy(p, p + cols, &out.at(i, col0));
        continue;
      }
      for (int64_t c = 0; c < cols; ++c) {
        T v = alpha * p[c];
        if (beta != T(0) && addend) v = beta * addend->at(i, col0 + c) + v;
        out.at(i, col0 + c) = v;
      }
    }
  }
};

bool overlaps(const void* a_begin, const void* a_end, const void* b_begin, const void* b_end) {
  return a_begin < b_end && b_begin < a_end;
}

// The memory a view spans (its first to one past its last element), for the aliasing check.
template <typename T>
std::pair<const void*, const void*> span_of(const MatrixView<T>& v) {
  if (v.rows == 0 || v.cols == 0) return {v.data, v.data};
  const T* last = &v.at(v.rows - 1, v.cols - 1);
  const T* first = v.data;
  return {first, last + 1};
}

// out = beta * addend + alpha * a b by the selected kernel, tile by tile, over oneTBB threads when the product
// is large enough to share. The split changes which thread computes a tile, never a tile's chains.
void run_tiles(const MatrixView<const float>& a, const MatrixView<const float>& b, const Epilogue<float>& epilogue) {
  const int64_t m = a.rows, k = a.cols, n = b.cols;
  const int64_t panels = (n + kPanel - 1) / kPanel;
  const float* packed = pack_panels(b);
  const GemmKernel kernel = kernel_in_use().load();
  const int64_t row_tiles = (m + kRowsPerTile - 1) / kRowsPerTile, panel_pairs = (panels + 1) / 2;
  auto run = [&](int64_t rt, int64_t pp) {
    alignas(64) float prod[kRowsPerTile * 2 * kPanel];
    const int rows = static_cast<int>(std::min<int64_t>(kRowsPerTile, m - rt * kRowsPerTile));
    Tile t{a.data + rt * kRowsPerTile * a.row_stride, a.row_stride, a.col_stride, packed + 2 * pp * k * kPanel, k,
           prod, 2 * kPanel, rows,
           static_cast<int>(std::min<int64_t>(2, panels - 2 * pp))};
    tile_function(kernel, rows)(t);
    const int64_t col0 = 2 * pp * kPanel;
    epilogue.store(prod, 2 * kPanel, rt * kRowsPerTile, rows, col0, std::min(2 * kPanel, n - col0));
  };
  constexpr double kSerialFlops = 1 << 20;  // below this a product stays on the calling thread
  if (2.0 * m * n * k < kSerialFlops) {
    for (int64_t pp = 0; pp < panel_pairs; ++pp)
      for (int64_t rt = 0; rt < row_tiles; ++rt) run(rt, pp);
  } else {
    tbb::parallel_for(tbb::blocked_range2d<int64_t>(0, panel_pairs, 1, 0, row_tiles, 8),
                      [&](const tbb::blocked_range2d<int64_t>& r) {
                        for (int64_t pp = r.rows().begin(); pp < r.rows().end(); ++pp)
                          for (int64_t rt = r.cols().begin(); rt < r.cols().end(); ++rt) run(rt, pp);
                      });
  }
}

template <typename T>
void check_shapes(const MatrixView<const T>& a, const MatrixView<const T>& b, const MatrixView<T>& out,
                  const MatrixView<const T>* addend) {
  if (a.cols != b.rows || out.rows != a.rows || out.cols != b.cols ||
      (addend && (addend->rows != out.rows || addend->cols != out.cols)))
    throw Error("fixed_order_gemm: mismatched shapes");
}

}  // namespace

void fixed_order_gemm(MatrixView<const float> a, MatrixView<const float> b, MatrixView<float> out,
                      const MatrixView<const float>* addend, float beta, float alpha) {
  check_shapes(a, b, out, addend);
  if (out.rows == 0 || out.cols == 0) return;
  if (a.cols == 0) {  // an empty sum: the product is zero
    const std::vector<float> zeros(static_cast<size_t>(out.cols), 0.0f);
    Epilogue<float>{out, addend, beta, alpha}.store(zeros.data(), 0, 0, out.rows, 0, out.cols);
    return;
  }
  // Tiles write out as they finish, so out must not share memory with the operands (the addend may: each
  // element is read just before it is written). Otherwise the product goes through a buffer.
  const auto o = span_of(out), sa = span_of(a), sb = span_of(b);
  if (overlaps(o.first, o.second, sa.first, sa.second) || overlaps(o.first, o.second, sb.first, sb.second)) {
    std::vector<float> buffer(static_cast<size_t>(out.rows * out.cols));
    run_tiles(a, b, {{buffer.data(), out.rows, out.cols, out.cols, 1}, nullptr, 0.0f, 1.0f});
    Epilogue<float>{out, addend, beta, alpha}.store(buffer.data(), out.cols, 0, out.rows, 0, out.cols);
    return;
  }
  run_tiles(a, b, Epilogue<float>{out, addend, beta, alpha});
}

// Doubles (rare in modiff: no network trains in double) take the reference chain without vector kernels.
void fixed_order_gemm(MatrixView<const double> a, MatrixView<const double> b, MatrixView<double> out,
                      const MatrixView<const double>* addend, double beta, double alpha) {
  check_shapes(a, b, out, addend);
  const int64_t m = a.rows, k = a.cols, n = b.cols;
  std::vector<double> prod(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t kk = 0; kk < k; ++kk) {
      const double av = a.at(i, kk);
      for (int64_t j = 0; j < n; ++j) prod[i * n + j] = std::fma(av, b.at(kk, j), prod[i * n + j]);
    }
  Epilogue<double>{out, addend, beta, alpha}.store(prod.data(), n, 0, m, 0, n);
}

bool gemm_kernel_supported(GemmKernel kernel) {
  switch (kernel) {
    case GemmKernel::Avx512: return __builtin_cpu_supports("avx512f");
    case GemmKernel::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case GemmKernel::Scalar: return true;
  }
  return false;
}

GemmKernel fastest_gemm_kernel() {
  if (gemm_kernel_supported(GemmKernel::Avx512)) return GemmKernel::Avx512;
  if (gemm_kernel_supported(GemmKernel::Avx2)) return GemmKernel::Avx2;
  return GemmKernel::Scalar;
}

void select_gemm_kernel(GemmKernel kernel) {
  if (!gemm_kernel_supported(kernel))
    throw Error(std::string("this CPU cannot run the ") + gemm_kernel_name(kernel) + " product kernel");
  kernel_in_use().store(kernel);
}

GemmKernel selected_gemm_kernel() { return kernel_in_use().load(); }

const char* gemm_kernel_name(GemmKernel kernel) {
  switch (kernel) {
    case GemmKernel::Avx512: return "avx512";
    case GemmKernel::Avx2: return "avx2";
    case GemmKernel::Scalar: return "scalar";
  }
  return "?";
}

}  // namespace modiff
