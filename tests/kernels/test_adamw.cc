// adamw_step against the header formula evaluated in double, over several steps, and the
// first step against its closed form.
//
// Tolerance. The kernel's update is fp32 (m, v, the quotient: a few ulp, ~1e-6 relative);
// the step changes p by lr·O(1), so each step adds ≲ lr·1e-6 error, far below 1e-6 absolute
// on p ~ 1 after 6 steps. m and v are compared relatively (fp32 state, 1e-5).
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/cpu/adamw.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::kernels::cpu;
using autosp::testing::random_vec;

namespace {

struct Hyper {
  float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f, grad_scale = 0.5f;
};

}  // namespace

TEST_CASE("adamw step 1 is p -= lr (g'/(|g'| + eps) + wd p)", "[adamw]") {
  // At t = 1 the bias corrections undo the (1 - b) factors exactly: m̂ = g', v̂ = g'².
  const Hyper h;
  const int64_t n = 37;
  auto p = random_vec(n, 1, -1, 1);
  const auto g = random_vec(n, 2, -1, 1), p0 = p;
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  adamw_step(p.data(), g.data(), m.data(), v.data(), n, h.lr, h.b1, h.b2, h.eps, h.wd, 1, h.grad_scale);
  for (int64_t i = 0; i < n; ++i) {
    const double gs = double{g[i]} * h.grad_scale;
    const double expect = p0[i] - double{h.lr} * (gs / (std::abs(gs) + h.eps) + double{h.wd} * p0[i]);
    REQUIRE(std::abs(p[i] - expect) <= 1e-6);
  }
}

TEST_CASE("adamw over six steps matches the formula in double", "[adamw]") {
  const Hyper h;
  const int64_t n = 1003;
  auto p = random_vec(n, 3, -1, 1);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  std::vector<double> pd(p.begin(), p.end()), md(n, 0.0), vd(n, 0.0);
  for (int64_t t = 1; t <= 6; ++t) {
    const auto g = random_vec(n, 10 + static_cast<uint32_t>(t), -2, 2);
    adamw_step(p.data(), g.data(), m.data(), v.data(), n, h.lr, h.b1, h.b2, h.eps, h.wd, t, h.grad_scale);
    const double bc1 = 1 - std::pow(double{h.b1}, t), bc2 = 1 - std::pow(double{h.b2}, t);
    for (int64_t i = 0; i < n; ++i) {
      const double gs = double{g[i]} * h.grad_scale;
      md[i] = h.b1 * md[i] + (1 - double{h.b1}) * gs;
      vd[i] = h.b2 * vd[i] + (1 - double{h.b2}) * gs * gs;
      pd[i] -= h.lr * (md[i] / bc1 / (std::sqrt(vd[i] / bc2) + h.eps) + h.wd * pd[i]);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    CAPTURE(i);
    REQUIRE(std::abs(p[i] - pd[i]) <= 1e-6);
    REQUIRE(std::abs(m[i] - md[i]) <= 1e-5 * std::abs(md[i]) + 1e-7);
    REQUIRE(std::abs(v[i] - vd[i]) <= 1e-5 * vd[i] + 1e-9);
  }
}
