// silu, gelu and swiglu: forward against the double formula, backward against central
// finite differences of that double formula.
//
// Tolerances. Forward: the kernel evaluates exp with vexp (≤ 2 ulp) and tanh as
// 1 - 2/(e^{2u}+1), whose absolute error is ~1e-7; after the outer multiplies we allow
// 2e-6 · (1 + |ref|) — a handful of fp32 ulp at |ref| ~ 1, two orders above double error.
// Backward: the FD derivative of the double formula with h = 1e-4 has truncation error
// h²·|f'''|/6 < 1e-8 and round-off 1e-16/h ≈ 1e-12, so the reference is good to ~1e-8; the
// fp32 kernel is compared at 1e-5 · (1 + |ref|), which gelu's (1 - t²)·x·du term needs at
// |x| ≈ 6 (fp32 error in t times a factor ~40).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <vector>

#include "kernels/cpu/activation.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::kernels::cpu;
using autosp::testing::random_vec;

namespace {

double silu_ref(double x) { return x / (1.0 + std::exp(-x)); }
double gelu_ref(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
double fd(const std::function<double(double)>& f, double x) {
  const double h = 1e-4;
  return (f(x + h) - f(x - h)) / (2 * h);
}

// Odd count; a dense sweep of [-6, 6] plus saturating extremes and exact zero.
std::vector<float> inputs() {
  std::vector<float> x;
  for (int i = 0; i <= 1000; ++i) x.push_back(-6.0f + 12.0f * static_cast<float>(i) / 1000.0f);
  for (float v : {0.0f, -30.0f, 30.0f, -100.0f, 100.0f, -1e-6f, 1e-6f}) x.push_back(v);
  return x;
}

void require_close(double got, double ref, double tol) {
  CAPTURE(got, ref);
  REQUIRE(std::abs(got - ref) <= tol * (1.0 + std::abs(ref)));
}

}  // namespace

TEST_CASE("silu and gelu forward match the double formula, saturating without NaN", "[activation]") {
  const auto x = inputs();
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> y(n);
  silu_forward(x.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) require_close(y[i], silu_ref(x[i]), 2e-6);
  gelu_forward(x.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) require_close(y[i], gelu_ref(x[i]), 2e-6);
}

TEST_CASE("silu and gelu backward match finite differences of the double formula", "[activation]") {
  const auto x = inputs();
  const int64_t n = static_cast<int64_t>(x.size());
  const auto dy = random_vec(n, 7, -2.0f, 2.0f);
  std::vector<float> dx(n);
  silu_backward(x.data(), dy.data(), dx.data(), n);
  for (int64_t i = 0; i < n; ++i) require_close(dx[i], dy[i] * fd(silu_ref, x[i]), 1e-5);
  gelu_backward(x.data(), dy.data(), dx.data(), n);
  for (int64_t i = 0; i < n; ++i) require_close(dx[i], dy[i] * fd(gelu_ref, x[i]), 1e-5);
}

TEST_CASE("swiglu is silu(gate)·up, and its backward matches finite differences", "[activation]") {
  const auto gate = inputs();
  const int64_t n = static_cast<int64_t>(gate.size());
  const auto up = random_vec(n, 8, -2.0f, 2.0f);
  const auto dy = random_vec(n, 9, -2.0f, 2.0f);
  std::vector<float> y(n), dgate(n), dup(n);
  swiglu_forward(gate.data(), up.data(), y.data(), n);
  swiglu_backward(gate.data(), up.data(), dy.data(), dgate.data(), dup.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i], u = up[i];
    require_close(y[i], silu_ref(g) * u, 2e-6);
    require_close(dgate[i], dy[i] * fd([u](double v) { return silu_ref(v) * u; }, g), 1e-5);
    require_close(dup[i], dy[i] * fd([g](double v) { return silu_ref(g) * v; }, u), 1e-5);
  }
}

TEST_CASE("activations stay correct on inputs past the threading threshold", "[activation]") {
  const int64_t n = 50001;
  const auto x = random_vec(n, 10, -2.0f, 2.0f);
  std::vector<float> y(n);
  gelu_forward(x.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) require_close(y[i], gelu_ref(x[i]), 2e-6);
}
