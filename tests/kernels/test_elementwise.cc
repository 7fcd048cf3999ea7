// binary (suffix broadcasting) and scale against a double-precision formula.
//
// Tolerance: exact. a, b are fp32, so a+b, a-b, a*b are exact in double and a/b rounded once
// to double then to fp32 is still the correctly rounded fp32 quotient (double has more than
// 2·24+2 bits), so the kernel's single IEEE op must equal float(double op) bit for bit.
#include <catch2/catch.hpp>

#include <vector>

#include "kernels/cpu/elementwise.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::kernels::cpu;
using autosp::testing::random_vec;

namespace {

double apply(BinaryOp op, double a, double b) {
  switch (op) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
  }
  return 0;
}

}  // namespace

TEST_CASE("binary ops broadcast b over a's leading dimensions, matching a double formula exactly",
          "[elementwise]") {
  const int64_t B = 2, T = 3, E = 37;  // E odd: not a vector-width multiple
  const int64_t na = B * T * E;
  const auto a = random_vec(na, 1, -3.0f, 3.0f);
  const auto b = random_vec(na, 2, 0.5f, 2.0f);  // away from 0 so div is well defined
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div}) {
    for (int64_t nb : {na, E, T * E, int64_t{1}}) {  // same shape, bias [E], [T,E], scalar
      CAPTURE(static_cast<int>(op), nb);
      std::vector<float> out(na);
      binary(op, a.data(), b.data(), out.data(), na, nb);
      for (int64_t i = 0; i < na; ++i)
        REQUIRE(out[i] == static_cast<float>(apply(op, a[i], b[i % nb])));
    }
  }
}

TEST_CASE("binary ops work in place and on inputs past the threading threshold", "[elementwise]") {
  const int64_t E = 1021, rows = 67;  // 68k elements: above the threading threshold
  const int64_t na = rows * E;
  auto a = random_vec(na, 3, -1.0f, 1.0f);
  const auto b = random_vec(E, 4, -1.0f, 1.0f);
  const auto a0 = a;
  binary(BinaryOp::mul, a.data(), b.data(), a.data(), na, E);
  for (int64_t i = 0; i < na; ++i) REQUIRE(a[i] == a0[i] * b[i % E]);
}

TEST_CASE("scale multiplies every element by s", "[elementwise]") {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{13}, int64_t{40001}}) {
    const auto x = random_vec(n, 5, -10.0f, 10.0f);
    std::vector<float> out(n);
    scale(x.data(), out.data(), n, -0.37f);
    for (int64_t i = 0; i < n; ++i) REQUIRE(out[i] == static_cast<float>(double{x[i]} * double{-0.37f}));
  }
}
