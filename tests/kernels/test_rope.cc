// rope: forward against a double reference (including positions up to 2e9), inverse ∘ rope
// = identity, and the VJP property the autodiff rule relies on (rope's adjoint is rope with
// inverse = true).
//
// Tolerances. The kernel's angles are exact to double, cos/sin are rounded once to fp32,
// and each output is two fp32 products and a sum: error ≤ ~3 ulp of |x1| + |x2| ≤ 2, so
// 1e-6 absolute for x in [-1, 1]. An fp32 angle would be off by up to ~0.06 rad at
// pos = 1e6 and fail this by four orders of magnitude — that is what the large-position
// case guards.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "kernels/cpu/rope.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::kernels::cpu;
using autosp::testing::random_vec;

namespace {

struct Shape {
  int64_t B, T, H, D;
  int64_t n() const { return B * T * H * D; }
};

std::vector<double> rope_ref(const std::vector<float>& x, const std::vector<int32_t>& pos, Shape s, double theta,
                             bool inverse) {
  std::vector<double> y(x.size());
  const int64_t half = s.D / 2;
  for (int64_t bt = 0; bt < s.B * s.T; ++bt)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const double angle = (inverse ? -1.0 : 1.0) * pos[bt] * std::pow(theta, -2.0 * i / s.D);
        const int64_t o = (bt * s.H + h) * s.D;
        const double x1 = x[o + i], x2 = x[o + i + half];
        y[o + i] = x1 * std::cos(angle) - x2 * std::sin(angle);
        y[o + i + half] = x2 * std::cos(angle) + x1 * std::sin(angle);
      }
  return y;
}

}  // namespace

TEST_CASE("rope matches a double reference, including positions of a million and beyond", "[rope]") {
  const Shape s{2, 5, 3, 10};  // D/2 = 5: odd, not a vector width
  const std::vector<int32_t> pos = {0, 1, 17, 4095, 65537, 999999, 1000000, 1048575, 123456789, 2000000000};
  const auto x = random_vec(s.n(), 1);
  for (bool inverse : {false, true}) {
    std::vector<float> y(s.n());
    rope(x.data(), pos.data(), y.data(), s.B, s.T, s.H, s.D, 10000.0f, inverse);
    const auto ref = rope_ref(x, pos, s, 10000.0, inverse);
    for (int64_t i = 0; i < s.n(); ++i) {
      CAPTURE(inverse, i, pos[i / (s.H * s.D)]);
      REQUIRE(std::abs(y[i] - ref[i]) <= 1e-6);
    }
  }
}

TEST_CASE("rope with inverse undoes rope, in place, past the threading threshold", "[rope]") {
  const Shape s{1, 300, 4, 64};  // 76.8k elements
  std::vector<int32_t> pos(s.B * s.T);
  for (size_t t = 0; t < pos.size(); ++t) pos[t] = static_cast<int32_t>(1000000 + 7 * t);
  const auto x = random_vec(s.n(), 2);
  auto y = x;
  rope(y.data(), pos.data(), y.data(), s.B, s.T, s.H, s.D, 500000.0f, false);
  std::vector<float> out_of_place(s.n());
  rope(x.data(), pos.data(), out_of_place.data(), s.B, s.T, s.H, s.D, 500000.0f, false);
  REQUIRE(y == out_of_place);  // in place is the same computation
  rope(y.data(), pos.data(), y.data(), s.B, s.T, s.H, s.D, 500000.0f, true);
  // Two rotations, each ≤ ~3 ulp of a magnitude ≤ 2.
  for (int64_t i = 0; i < s.n(); ++i) REQUIRE(std::abs(y[i] - x[i]) <= 2e-6);
}

TEST_CASE("rope's adjoint is inverse rope: <rope(x), w> = <x, rope_inv(w)>", "[rope]") {
  // rope is linear in x, so its VJP is its transpose; for a rotation that is the rotation by
  // -angle. A finite difference of a linear map is exact, so this inner-product identity is
  // the gradient check. Both sides in double over 390 terms of size ≤ 1: 1e-5 covers the fp32
  // outputs' rounding.
  const Shape s{3, 2, 5, 13 * 2};
  const std::vector<int32_t> pos = {3, 100, 5000, 70000, 1000000, 31};
  const auto x = random_vec(s.n(), 3), w = random_vec(s.n(), 4);
  std::vector<float> rx(s.n()), rw(s.n());
  rope(x.data(), pos.data(), rx.data(), s.B, s.T, s.H, s.D, 10000.0f, false);
  rope(w.data(), pos.data(), rw.data(), s.B, s.T, s.H, s.D, 10000.0f, true);
  double lhs = 0, rhs = 0;
  for (int64_t i = 0; i < s.n(); ++i) {
    lhs += double{rx[i]} * w[i];
    rhs += double{x[i]} * rw[i];
  }
  REQUIRE(std::abs(lhs - rhs) <= 1e-5);
}

// The angles are kept per (theta, D) and per thread: switching theta on a thread, or running
// on a new thread (with a position past the table's 1 MiB, computed per row), gives the same
// bits as the first call. (Accuracy in and past the table: the double-reference test above,
// whose positions up to 4095 come from the table and past 26214 are computed.)
TEST_CASE("rope's angle table gives the same bits whatever ran before on the thread", "[rope]") {
  const Shape s{1, 6, 2, 64};
  const std::vector<int32_t> small = {0, 5, 100, 4095, 17, 3}, past = {0, 5, 100, 4095, 17, 1 << 20};
  const auto x = random_vec(s.n(), 2);
  auto run = [&](const std::vector<int32_t>& pos, float theta) {
    std::vector<float> y(s.n());
    rope(x.data(), pos.data(), y.data(), s.B, s.T, s.H, s.D, theta, false);
    return y;
  };
  const std::vector<float> first = run(small, 10000.0f);
  const std::vector<float> other = run(small, 500000.0f);  // another theta on the same thread
  const std::vector<float> again = run(small, 10000.0f);
  std::vector<float> fresh;
  std::thread([&] { fresh = run(past, 10000.0f); }).join();
  CHECK(first == again);
  CHECK(first != other);
  const int64_t row = s.H * s.D;  // rows 0-4 have the same positions in both calls
  CHECK(std::equal(first.begin(), first.begin() + 5 * row, fresh.begin()));
}
