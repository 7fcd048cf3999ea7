// CUDA RMSNorm and LayerNorm, forward and backward, against kernels/cpu/norm for every pairing
// of activation type T and parameter type W. The CPU accumulates row statistics in double, the
// GPU in fp32 trees: over ≤ 1100 terms that is ~1e-6 relative in rstd and the dot products.
// Tolerances: fp32 y 1e-5; fp32 dx 1e-4 absolute (dx = r·(dy·g − xhat·c) cancels, and c's
// error times |xhat| ≤ 4 is ~1e-5); bf16 outputs the default 2^-7 (cuda_test_util.h); dg/db
// 1e-5 of Σ_rows |terms| (fp32 sums over 70 rows in another order), plus 2^-8 of the value
// when W is bf16 (one rounding of the output).
#include <catch2/catch.hpp>

#include <cmath>
#include <utility>
#include <vector>

#include "kernels/cpu/norm.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

namespace {

template <class T>
void check_act(const std::vector<float>& got, const std::vector<float>& want, float f32_abs) {
  if constexpr (std::is_same_v<T, float>)
    close(got, want, 1e-5f, f32_abs);
  else
    close_bf16(got, want);
}

// got vs want for a parameter gradient whose terms have absolute sum mag.
template <class W>
void check_param(const std::vector<float>& got, const std::vector<float>& want, const std::vector<float>& mag) {
  REQUIRE(got.size() == want.size());
  const float rel = std::is_same_v<W, float> ? 0.0f : 0x1p-8f;
  for (size_t j = 0; j < got.size(); ++j) {
    if (!(std::abs(got[j] - want[j]) <= rel * std::abs(want[j]) + 1e-5f * mag[j] + 1e-6f))
      FAIL("column " << j << ": got " << got[j] << ", want " << want[j]);
  }
}

// Per-row mean (0 for RMSNorm) and 1/std in double, for the magnitude bounds.
std::pair<std::vector<double>, std::vector<double>> row_stats(const std::vector<float>& x, int64_t rows, int64_t dim,
                                                              bool layer, float eps) {
  std::vector<double> mean(size_t(rows), 0.0), rstd(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0, ss = 0;
    for (int64_t j = 0; j < dim; ++j) s += x[size_t(r * dim + j)];
    if (layer) mean[size_t(r)] = s / double(dim);
    for (int64_t j = 0; j < dim; ++j) {
      const double d = x[size_t(r * dim + j)] - mean[size_t(r)];
      ss += d * d;
    }
    rstd[size_t(r)] = 1.0 / std::sqrt(ss / double(dim) + eps);
  }
  return {mean, rstd};
}

template <class T, class W>
void run(int64_t rows, int64_t dim, bool layer) {
  const float eps = 1e-5f;
  const size_t n = size_t(rows * dim);
  DevBuf<T> x(random(n, 1)), dy(random(n, 2)), y(n), dx(n);
  DevBuf<W> g(random(size_t(dim), 3)), b(random(size_t(dim), 4)), dg(static_cast<size_t>(dim)),
      db(static_cast<size_t>(dim));
  Scratch scratch(gpu::norm_backward_scratch_bytes(rows, dim, layer));
  std::vector<float> ry(n), rdx(n), rdg(static_cast<size_t>(dim)), rdb(static_cast<size_t>(dim));
  if (layer) {
    gpu::layer_norm_forward(x.dev, g.dev, b.dev, y.dev, rows, dim, eps, nullptr);
    gpu::layer_norm_backward(x.dev, g.dev, dy.dev, dx.dev, dg.dev, db.dev, scratch.as<float>(), rows, dim, eps,
                             nullptr);
    cpu::layer_norm_forward(x.host.data(), g.host.data(), b.host.data(), ry.data(), rows, dim, eps);
    cpu::layer_norm_backward(x.host.data(), g.host.data(), dy.host.data(), rdx.data(), rdg.data(), rdb.data(), rows,
                             dim, eps);
  } else {
    gpu::rms_norm_forward(x.dev, g.dev, y.dev, rows, dim, eps, nullptr);
    gpu::rms_norm_backward(x.dev, g.dev, dy.dev, dx.dev, dg.dev, scratch.as<float>(), rows, dim, eps, nullptr);
    cpu::rms_norm_forward(x.host.data(), g.host.data(), ry.data(), rows, dim, eps);
    cpu::rms_norm_backward(x.host.data(), g.host.data(), dy.host.data(), rdx.data(), rdg.data(), rows, dim, eps);
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  check_act<T>(y.download(), ry, 1e-5f);
  check_act<T>(dx.download(), rdx, 1e-4f);

  const auto [mean, rstd] = row_stats(x.host, rows, dim, layer, eps);
  std::vector<float> mag_g(size_t(dim), 0.0f), mag_b(size_t(dim), 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < dim; ++j) {
      const size_t i = size_t(r * dim + j);
      mag_g[size_t(j)] += float(std::abs(dy.host[i] * (x.host[i] - mean[size_t(r)]) * rstd[size_t(r)]));
      mag_b[size_t(j)] += std::abs(dy.host[i]);
    }
  const std::vector<float> dg1 = dg.download();
  check_param<W>(dg1, rdg, mag_g);
  if (layer) check_param<W>(db.download(), rdb, mag_b);

  // Deterministic: a second backward reproduces dg bit for bit.
  if (layer)
    gpu::layer_norm_backward(x.dev, g.dev, dy.dev, dx.dev, dg.dev, db.dev, scratch.as<float>(), rows, dim, eps,
                             nullptr);
  else
    gpu::rms_norm_backward(x.dev, g.dev, dy.dev, dx.dev, dg.dev, scratch.as<float>(), rows, dim, eps, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  REQUIRE(dg.download() == dg1);
}

}  // namespace

// (T, W): activations, parameters.
TEMPLATE_TEST_CASE("CUDA rms_norm and layer_norm forward and backward match the CPU kernels", "[cuda]",
                   (std::pair<float, float>), (std::pair<float, gpu::bf16>), (std::pair<gpu::bf16, float>),
                   (std::pair<gpu::bf16, gpu::bf16>)) {
  REQUIRE_GPU();
  using T = typename TestType::first_type;
  using W = typename TestType::second_type;
  // 37 × 300: one pass of a 256-thread row block plus a tail; 70 × 1100: several passes, and
  // more rows than the 32 row groups of the parameter-gradient kernel; 2600 × 96: three
  // slices of rows for it, the last one short.
  for (const auto& [rows, dim] : {std::pair<int64_t, int64_t>{37, 300}, {70, 1100}, {2600, 96}}) {
    for (bool layer : {false, true}) {
      INFO((layer ? "layer_norm " : "rms_norm ") << rows << " x " << dim);
      run<T, W>(rows, dim, layer);
    }
  }
}
