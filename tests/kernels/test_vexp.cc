// vexp and the softmax row helpers (kernels/cpu/vexp.h), which attention, cross-entropy and
// the activations rely on, against std::exp in double.
//
// Tolerance: 3e-7 relative. The header promises < 2e-7 (about 2 ulp: the degree-6 polynomial
// is good to ~1e-7 on |r| <= ln2/2, plus the rounding of r); 3e-7 leaves room for the final
// multiply's rounding while still catching a wrong coefficient (errors ~1e-4 and up).
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/vexp.h"

using namespace autosp::kernels::cpu;

TEST_CASE("vexp is within 3e-7 relative of exp over [-87, 88]", "[vexp]") {
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f + 175.0f * static_cast<float>(i) / 200000.0f;
    const double ref = std::exp(double(x));
    worst = std::max(worst, std::abs(vexp(x) - ref) / ref);
  }
  CHECK(worst <= 3e-7);
}

TEST_CASE("vexp gives exactly 0 below -87 and for -inf, exactly 1 at 0, and propagates NaN", "[vexp]") {
  CHECK(vexp(-87.5f) == 0.0f);
  CHECK(vexp(-1000.0f) == 0.0f);
  CHECK(vexp(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(vexp(0.0f) == 1.0f);  // exp(m - m) = 1: online softmax relies on no rescale drift
  CHECK(std::isnan(vexp(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("row_max and exp_shift_sum match the scalar loops for lengths around the lane width",
          "[vexp]") {
  for (int64_t n : {0, 1, 15, 16, 17, 64, 100}) {
    INFO("n = " << n);
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = std::sin(0.7f * float(i)) * 5.0f;
    float mx = -1e30f;
    for (float v : x) mx = std::max(mx, v);
    CHECK(row_max(x.data(), n, -1e30f) == mx);
    CHECK(row_max(x.data(), n, 100.0f) == 100.0f);  // the initial value takes part

    std::vector<float> y = x;
    const float sum = exp_shift_sum(y.data(), n, mx);
    double ref_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      // exp of the fp32 difference, as the helper computes it: rounding x - mx itself would
      // add |x - mx| · 2^-24 ≈ 6e-7 relative for the arguments near -10 here.
      const double e = std::exp(double(x[i] - mx));
      ref_sum += e;
      CHECK(std::abs(y[i] - e) <= 3e-7 * e);
    }
    // fp32 sum of n ≤ 100 positive terms: relative error ≤ n · 2^-24 ≈ 6e-6.
    CHECK(std::abs(sum - ref_sum) <= 6e-6 * std::max(1.0, ref_sum));
  }
}
