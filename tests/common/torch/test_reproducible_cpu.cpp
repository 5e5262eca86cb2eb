// CPU products whose bits depend on the operands alone (fixed_order_gemm.h, reproducible_cpu.cpp): each
// element is the fused multiply-add chain over k in order on every kernel; LibTorch's CPU products run them,
// so a row's result does not depend on the rows beside it, the thread count or the BLAS library.
#include <tbb/global_control.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "modiff/torch/fixed_order_gemm.h"
#include <torch/torch.h>

using namespace modiff;

namespace {

// The definition: p_ij = fma(a_i,k-1, b_k-1,j, ... fma(a_i0, b_0j, 0)), then beta * c_ij + alpha * p_ij.
std::vector<float> reference_chain(const std::vector<float>& a, const std::vector<float>& b, int64_t m, int64_t k,
                                   int64_t n) {
  std::vector<float> p(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.0f;
      for (int64_t kk = 0; kk < k; ++kk) acc = std::fma(a[i * k + kk], b[kk * n + j], acc);
      p[i * n + j] = acc;
    }
  return p;
}

std::vector<float> random_floats(size_t count, uint32_t seed) {
  std::vector<float> v(count);
  uint32_t s = seed * 2654435761u + 1;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(static_cast<int32_t>(s >> 8) - (1 << 23)) / float(1 << 22);  // about [-2, 2)
  }
  return v;
}

bool same_bits(const float* a, const float* b, size_t count) { return std::memcmp(a, b, count * sizeof(float)) == 0; }

torch::Tensor tensor_of(const std::vector<float>& v, int64_t rows, int64_t cols) {
  return torch::from_blob(const_cast<float*>(v.data()), {rows, cols}, torch::kFloat32).clone();
}

struct KernelRestore {
  GemmKernel before = selected_gemm_kernel();
  ~KernelRestore() { select_gemm_kernel(before); }
};

}  // namespace

TEST_CASE("fixed-order products: every element is the fma chain over k, on every kernel and view", "[repro]") {
  KernelRestore restore;
  const struct { int64_t m, k, n; } shapes[] = {{1, 1, 1}, {1, 5, 3}, {7, 0, 9}, {6, 17, 16}, {13, 29, 33},
                                                {2, 256, 100}, {37, 64, 47}, {5, 3, 65}};
  std::vector<GemmKernel> kernels;
  for (GemmKernel g : {GemmKernel::Scalar, GemmKernel::Avx2, GemmKernel::Avx512})
    if (gemm_kernel_supported(g)) kernels.push_back(g);
  INFO("kernels this CPU runs: " << kernels.size());
  REQUIRE(!kernels.empty());
  for (const auto& s : shapes) {
    const auto a = random_floats(static_cast<size_t>(s.m * s.k), 1), b = random_floats(static_cast<size_t>(s.k * s.n), 2);
    const auto c = random_floats(static_cast<size_t>(s.n), 3);
    const auto p = reference_chain(a, b, s.m, s.k, s.n);
    std::vector<float> want(p.size());
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t j = 0; j < s.n; ++j) want[i * s.n + j] = 0.5f * c[j] + 2.0f * p[i * s.n + j];
    // B given transposed (as nn::Linear's weight is stored) and A transposed too.
    std::vector<float> bt(b.size()), at(a.size());
    for (int64_t kk = 0; kk < s.k; ++kk)
      for (int64_t j = 0; j < s.n; ++j) bt[j * s.k + kk] = b[kk * s.n + j];
    for (int64_t i = 0; i < s.m; ++i)
      for (int64_t kk = 0; kk < s.k; ++kk) at[kk * s.m + i] = a[i * s.k + kk];
    for (GemmKernel g : kernels) {
      select_gemm_kernel(g);
      INFO(gemm_kernel_name(g) << " kernel, " << s.m << " x " << s.k << " x " << s.n);
      std::vector<float> out(p.size(), -1.0f), out_t(p.size(), -1.0f), plain(p.size(), -1.0f);
      const MatrixView<const float> bias{c.data(), s.m, s.n, 0, 1};
      fixed_order_gemm({a.data(), s.m, s.k, s.k, 1}, {b.data(), s.k, s.n, s.n, 1}, {out.data(), s.m, s.n, s.n, 1},
                       &bias, 0.5f, 2.0f);
      fixed_order_gemm({at.data(), s.m, s.k, 1, s.m}, {bt.data(), s.k, s.n, 1, s.k},
                       {out_t.data(), s.m, s.n, s.n, 1}, &bias, 0.5f, 2.0f);
      fixed_order_gemm({a.data(), s.m, s.k, s.k, 1}, {b.data(), s.k, s.n, s.n, 1}, {plain.data(), s.m, s.n, s.n, 1},
                       nullptr, 0.0f, 1.0f);
      CHECK(same_bits(out.data(), want.data(), want.size()));
      CHECK(same_bits(out_t.data(), want.data(), want.size()));
      CHECK(same_bits(plain.data(), p.data(), p.size()));
    }
  }
  // beta = 0 does not read the addend (BLAS's rule: a NaN there does not propagate).
  const std::vector<float> one{1.0f}, nan{std::nanf("")};
  std::vector<float> out{0.0f};
  const MatrixView<const float> nan_view{nan.data(), 1, 1, 1, 1};
  fixed_order_gemm({one.data(), 1, 1, 1, 1}, {one.data(), 1, 1, 1, 1}, {out.data(), 1, 1, 1, 1}, &nan_view, 0.0f, 3.0f);
  CHECK(out[0] == 3.0f);
  CHECK_THROWS(fixed_order_gemm({one.data(), 1, 1, 1, 1}, {one.data(), 2, 1, 1, 1}, {out.data(), 1, 1, 1, 1}, nullptr,
                                0.0f, 1.0f));
}

TEST_CASE("LibTorch's CPU products are the fixed-order ones: rows, batches and threads change no bit", "[repro]") {
  const int64_t m = 37, k = 29, n = 23;
  const auto xa = random_floats(m * k, 4), wa = random_floats(n * k, 5), ba = random_floats(n, 6);
  const torch::Tensor x = tensor_of(xa, m, k), w = tensor_of(wa, n, k), b = tensor_of(ba, 1, n).reshape({n});
  // The reference: W^T as a [k, n] matrix, the chain, the bias added after.
  std::vector<float> wt(static_cast<size_t>(k * n));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t kk = 0; kk < k; ++kk) wt[kk * n + j] = wa[j * k + kk];
  auto p = reference_chain(xa, wt, m, k, n);
  std::vector<float> linear_want(p.size());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) linear_want[i * n + j] = ba[j] + p[i * n + j];

  const torch::Tensor y = torch::linear(x, w, b).contiguous();
  CHECK(same_bits(y.data_ptr<float>(), linear_want.data(), linear_want.size()));
  CHECK(same_bits(torch::mm(x, w.t()).contiguous().data_ptr<float>(), p.data(), p.size()));
  CHECK(same_bits(torch::matmul(x, w.t()).contiguous().data_ptr<float>(), p.data(), p.size()));
  CHECK(same_bits(torch::addmm(b, x, w.t()).contiguous().data_ptr<float>(), linear_want.data(), p.size()));
  torch::Tensor acc = b.expand({m, n}).clone();
  acc.addmm_(x, w.t());
  CHECK(same_bits(acc.data_ptr<float>(), linear_want.data(), p.size()));
  const torch::Tensor batched = torch::bmm(torch::stack({x, x}), torch::stack({w.t(), w.t()})).contiguous();
  CHECK(same_bits(batched.data_ptr<float>(), p.data(), p.size()));
  CHECK(same_bits(batched.data_ptr<float>() + m * n, p.data(), p.size()));
  const torch::Tensor badd = torch::baddbmm(b, x.unsqueeze(0), w.t().unsqueeze(0)).contiguous();
  CHECK(same_bits(badd.data_ptr<float>(), linear_want.data(), p.size()));
  // A vector is a one-row matrix: the same chain.
  const torch::Tensor row = torch::mv(w, x[3]).contiguous();
  for (int64_t j = 0; j < n; ++j) CHECK(row[j].item<float>() == p[3 * n + j]);
  CHECK(torch::dot(x[3], w[0]).item<float>() == p[3 * n + 0]);

  // Each row alone, and the rows in batches of other sizes, give the batch's bits.
  for (int64_t i = 0; i < m; ++i) {
    const torch::Tensor alone = torch::linear(x.narrow(0, i, 1), w, b).contiguous();
    CHECK(same_bits(alone.data_ptr<float>(), linear_want.data() + i * n, n));
  }
  const torch::Tensor tail = torch::linear(x.narrow(0, 5, 11), w, b).contiguous();
  CHECK(same_bits(tail.data_ptr<float>(), linear_want.data() + 5 * n, 11 * n));

  // Autograd's backward products are the same kernels: the weight's gradient is the chain of dY^T X over rows.
  const torch::Tensor wg = w.clone().requires_grad_(true);
  const torch::Tensor g = tensor_of(random_floats(m * n, 7), m, n);
  torch::linear(x, wg, b).backward(g);
  std::vector<float> gt(static_cast<size_t>(n * m)), ga(g.data_ptr<float>(), g.data_ptr<float>() + m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) gt[j * m + i] = ga[i * n + j];
  const auto wgrad = reference_chain(gt, xa, n, m, k);
  CHECK(same_bits(wg.grad().contiguous().data_ptr<float>(), wgrad.data(), wgrad.size()));

  // A product large enough to spread over threads gives the same bits on 1 and 2 of them.
  const torch::Tensor big_a = tensor_of(random_floats(300 * 256, 8), 300, 256);
  const torch::Tensor big_b = tensor_of(random_floats(256 * 256, 9), 256, 256);
  torch::Tensor on_one, on_two;
  {
    tbb::global_control one(tbb::global_control::max_allowed_parallelism, 1);
    on_one = torch::mm(big_a, big_b);
  }
  {
    tbb::global_control two(tbb::global_control::max_allowed_parallelism, 2);
    on_two = torch::mm(big_a, big_b);
  }
  CHECK(torch::equal(on_one, on_two));
  // And stays close to the true product (the chain is an ordinary float dot product).
  CHECK(torch::allclose(on_one.to(torch::kFloat64), torch::mm(big_a.to(torch::kFloat64), big_b.to(torch::kFloat64)),
                        1e-4, 1e-4));
}
