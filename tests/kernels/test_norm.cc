// rms_norm and layer_norm: forward against a double formula, backward (dx, dg, db) against
// central finite differences of that formula, dg/db determinism under several threads.
//
// Tolerances. Forward: each output is a few fp32 ops on statistics the kernel accumulates
// in double; outputs are ≲ 4 in size, so 2e-6 absolute is ~8 fp32 ulp (observed ~2e-7).
// Rounding the layer-norm mean to a single float would cost 2.5e-5 on the row with mean
// 1000, so that case fails if the kernel's compensated mean is lost.
// Backward: the loss is L = Σ w·y(x, g, b) with w random; FD in double with h = 1e-4 has
// truncation error ~h² (1e-8) and round-off 1e-16·|L|/h (1e-11), so the reference is good
// to 1e-7; the fp32 kernel is allowed 1e-5 absolute on gradients of size ~1-5 (~10 fp32
// ulp: dg sums `rows` terms, dx cancels two terms of size ~|dy g|; observed < 1e-6).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/cpu/norm.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::kernels::cpu;
using autosp::testing::OmpThreads;
using autosp::testing::random_vec;

namespace {

using Vec = std::vector<double>;

Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// y for the double reference; b empty means RMSNorm.
Vec norm_ref(const Vec& x, const Vec& g, const Vec& b, int64_t rows, int64_t dim, double eps) {
  Vec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = &x[r * dim];
    double mean = 0, ms = 0;
    if (!b.empty()) {
      for (int64_t j = 0; j < dim; ++j) mean += xr[j];
      mean /= dim;
    }
    for (int64_t j = 0; j < dim; ++j) ms += (xr[j] - mean) * (xr[j] - mean);
    const double rstd = 1.0 / std::sqrt(ms / dim + eps);
    for (int64_t j = 0; j < dim; ++j) y[r * dim + j] = (xr[j] - mean) * rstd * g[j] + (b.empty() ? 0.0 : b[j]);
  }
  return y;
}

// ∂/∂v_i of L(v) by central differences, for every i.
Vec fd_grad(Vec v, const std::function<double(const Vec&)>& L) {
  const double h = 1e-4;
  Vec grad(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double v0 = v[i];
    v[i] = v0 + h;
    const double lp = L(v);
    v[i] = v0 - h;
    const double lm = L(v);
    v[i] = v0;
    grad[i] = (lp - lm) / (2 * h);
  }
  return grad;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

void require_close(const std::vector<float>& got, const Vec& ref, double tol) {
  REQUIRE(got.size() == ref.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i, got[i], ref[i]);
    REQUIRE(std::abs(got[i] - ref[i]) <= tol);
  }
}

}  // namespace

TEST_CASE("rms_norm forward is x·rsqrt(mean(x²)+eps)·g", "[norm]") {
  const int64_t rows = 5, dim = 67;
  const auto x = random_vec(rows * dim, 1, -2, 2), g = random_vec(dim, 2, 0.5, 1.5);
  std::vector<float> y(rows * dim);
  rms_norm_forward(x.data(), g.data(), y.data(), rows, dim, 1e-5f);
  require_close(y, norm_ref(to_double(x), to_double(g), {}, rows, dim, 1e-5f), 2e-6);
}

TEST_CASE("layer_norm forward is exact for rows with a large mean (two-pass variance)", "[norm]") {
  const int64_t rows = 4, dim = 129;
  auto x = random_vec(rows * dim, 3, -1, 1);
  for (int64_t i = 0; i < dim; ++i) x[i] += 1000.0f;  // row 0: mean 1000, spread 1
  const auto g = random_vec(dim, 4, 0.5, 1.5), b = random_vec(dim, 5, -1, 1);
  std::vector<float> y(rows * dim);
  layer_norm_forward(x.data(), g.data(), b.data(), y.data(), rows, dim, 1e-5f);
  require_close(y, norm_ref(to_double(x), to_double(g), to_double(b), rows, dim, 1e-5f), 2e-6);
}

TEST_CASE("rms_norm backward matches finite differences for dx and dg", "[norm]") {
  const int64_t rows = 3, dim = 13;
  const float eps = 1e-5f;
  const auto x = random_vec(rows * dim, 6, -2, 2), g = random_vec(dim, 7, 0.5, 1.5);
  const auto dy = random_vec(rows * dim, 8, -1, 1);
  std::vector<float> dx(rows * dim), dg(dim, 123.0f);  // dg is overwritten, not accumulated
  rms_norm_backward(x.data(), g.data(), dy.data(), dx.data(), dg.data(), rows, dim, eps);
  const Vec xd = to_double(x), gd = to_double(g), w = to_double(dy);
  require_close(dx, fd_grad(xd, [&](const Vec& v) { return dot(w, norm_ref(v, gd, {}, rows, dim, eps)); }), 1e-5);
  require_close(dg, fd_grad(gd, [&](const Vec& v) { return dot(w, norm_ref(xd, v, {}, rows, dim, eps)); }), 1e-5);
}

TEST_CASE("layer_norm backward matches finite differences for dx, dg and db", "[norm]") {
  const int64_t rows = 3, dim = 13;
  const float eps = 1e-5f;
  const auto x = random_vec(rows * dim, 9, -2, 2), g = random_vec(dim, 10, 0.5, 1.5);
  const auto b = random_vec(dim, 11, -1, 1), dy = random_vec(rows * dim, 12, -1, 1);
  std::vector<float> dx(rows * dim), dg(dim, 123.0f), db(dim, 123.0f);
  layer_norm_backward(x.data(), g.data(), dy.data(), dx.data(), dg.data(), db.data(), rows, dim, eps);
  const Vec xd = to_double(x), gd = to_double(g), bd = to_double(b), w = to_double(dy);
  auto loss = [&](const Vec& xv, const Vec& gv, const Vec& bv) { return dot(w, norm_ref(xv, gv, bv, rows, dim, eps)); };
  require_close(dx, fd_grad(xd, [&](const Vec& v) { return loss(v, gd, bd); }), 1e-5);
  require_close(dg, fd_grad(gd, [&](const Vec& v) { return loss(xd, v, bd); }), 1e-5);
  require_close(db, fd_grad(bd, [&](const Vec& v) { return loss(xd, gd, v); }), 1e-5);
}

TEST_CASE("norm backward over many rows is deterministic with 3 threads and agrees with 1 thread",
          "[norm]") {
  const int64_t rows = 301, dim = 131;  // 39k elements: above the threading threshold
  const auto x = random_vec(rows * dim, 13, -2, 2), g = random_vec(dim, 14, 0.5, 1.5);
  const auto dy = random_vec(rows * dim, 15, -1, 1);
  auto run = [&](int threads) {
    const OmpThreads team(threads);
    std::vector<float> dx(rows * dim), dg(dim), db(dim);
    layer_norm_backward(x.data(), g.data(), dy.data(), dx.data(), dg.data(), db.data(), rows, dim, 1e-5f);
    dx.insert(dx.end(), dg.begin(), dg.end());
    dx.insert(dx.end(), db.begin(), db.end());
    return dx;
  };
  const auto a = run(3), b = run(3), one = run(1);
  REQUIRE(a == b);  // bit-identical run to run
  // Different thread counts split the dg/db sums differently; the double partials keep the
  // difference at fp32 rounding of sums of ~300 terms of size ~1.
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(a[i] - one[i]) <= 1e-5f * (1.0f + std::abs(one[i])));
}
