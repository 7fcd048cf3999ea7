// reduce_sum and broadcast over every axis subset, against index arithmetic in double;
// their adjointness; sum_squares.
//
// Tolerances. reduce_sum accumulates in double and rounds once, as the reference does; the
// two double sums differ only in order (~1e-16 relative), so the fp32 results agree to
// 1 ulp: 2e-7 relative to Σ|x| (what bounds the rounding of a sum with cancellation).
// broadcast is one fp32 multiply per element: exact.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/cpu/reduce.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::kernels::cpu;
using autosp::testing::OmpThreads;
using autosp::testing::random_vec;

namespace {

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// Flat index of x → flat index of the kept-axes tensor.
int64_t out_index(int64_t i, const std::vector<int64_t>& shape, const std::vector<bool>& reduce) {
  int64_t o = 0, o_stride = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    const int64_t c = i % shape[d];
    i /= shape[d];
    if (!reduce[d]) {
      o += c * o_stride;
      o_stride *= shape[d];
    }
  }
  return o;
}

int64_t out_count(const std::vector<int64_t>& shape, const std::vector<bool>& reduce) {
  int64_t n = 1;
  for (size_t d = 0; d < shape.size(); ++d)
    if (!reduce[d]) n *= shape[d];
  return n;
}

std::vector<bool> subset(unsigned mask, size_t rank) {
  std::vector<bool> r(rank);
  for (size_t d = 0; d < rank; ++d) r[d] = (mask >> d) & 1u;
  return r;
}

void check_reduce(const std::vector<int64_t>& shape, const std::vector<bool>& reduce, uint32_t seed) {
  const auto x = random_vec(numel(shape), seed);
  const int64_t n_out = out_count(shape, reduce);
  std::vector<double> sum(n_out, 0.0), abs_sum(n_out, 0.0);
  for (int64_t i = 0; i < numel(shape); ++i) {
    sum[out_index(i, shape, reduce)] += x[i];
    abs_sum[out_index(i, shape, reduce)] += std::abs(x[i]);
  }
  std::vector<float> out(n_out, NAN);
  reduce_sum(x.data(), out.data(), shape, reduce, 0.5f);
  for (int64_t o = 0; o < n_out; ++o) {
    CAPTURE(o, out[o], 0.5 * sum[o]);
    REQUIRE(std::abs(out[o] - 0.5 * sum[o]) <= 2e-7 * 0.5 * abs_sum[o] + 1e-30);
  }
}

void check_broadcast(const std::vector<int64_t>& shape, const std::vector<bool>& reduce, uint32_t seed) {
  const auto x = random_vec(out_count(shape, reduce), seed);
  std::vector<float> out(numel(shape), NAN);
  broadcast(x.data(), out.data(), shape, reduce, -3.0f);
  for (int64_t i = 0; i < numel(shape); ++i) REQUIRE(out[i] == x[out_index(i, shape, reduce)] * -3.0f);
}

}  // namespace

TEST_CASE("reduce_sum and broadcast are correct for every axis subset of a 5-d shape", "[reduce]") {
  const std::vector<int64_t> shape = {3, 1, 5, 7, 2};  // a size-1 axis and odd sizes
  for (unsigned mask = 0; mask < 32; ++mask) {
    CAPTURE(mask);
    check_reduce(shape, subset(mask, shape.size()), mask + 1);
    check_broadcast(shape, subset(mask, shape.size()), mask + 100);
  }
}

TEST_CASE("reduce_sum is correct on large shapes with 3 threads (bias gradient, rows, all)", "[reduce]") {
  const OmpThreads threads(3);
  const std::vector<int64_t> shape = {3, 301, 523};  // 523 columns: three column blocks, the last partial
  for (unsigned mask : {3u, 4u, 5u, 2u, 7u}) {       // {B,T} (bias), {E}, {B,E}, {T}, all (> one chunk)
    CAPTURE(mask);
    check_reduce(shape, subset(mask, 3), mask);
    check_broadcast(shape, subset(mask, 3), mask);
  }
}

TEST_CASE("reduce_sum over an empty axis gives zeros", "[reduce]") {
  std::vector<float> out(3, NAN);
  reduce_sum(nullptr, out.data(), {3, 0}, {false, true}, 1.0f);
  REQUIRE(out == std::vector<float>(3, 0.0f));
}

TEST_CASE("broadcast is the adjoint of reduce_sum: <reduce(x), y> = <x, broadcast(y)>", "[reduce]") {
  // The autodiff rule VJP(reduce_sum) = broadcast depends on this. Both sides in double over
  // ~400 terms of size ≤ 1; fp32 outputs round at 6e-8 relative: 1e-5 absolute.
  const std::vector<int64_t> shape = {4, 9, 11};
  const std::vector<bool> reduce = {true, false, true};
  const auto x = random_vec(numel(shape), 1), y = random_vec(9, 2);
  std::vector<float> rx(9), by(numel(shape));
  reduce_sum(x.data(), rx.data(), shape, reduce, 1.0f);
  broadcast(y.data(), by.data(), shape, reduce, 1.0f);
  double lhs = 0, rhs = 0;
  for (int i = 0; i < 9; ++i) lhs += double{rx[i]} * y[i];
  for (int64_t i = 0; i < numel(shape); ++i) rhs += double{x[i]} * by[i];
  REQUIRE(std::abs(lhs - rhs) <= 1e-5);
}

TEST_CASE("sum_squares equals the double sum of squares", "[reduce]") {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{77}, int64_t{200003}}) {
    const auto x = random_vec(n, 9);
    double ref = 0;
    for (float v : x) ref += double{v} * v;
    // Both in double, different order: ~n·1e-16 relative.
    REQUIRE(std::abs(sum_squares(x.data(), n) - ref) <= 1e-12 * (1.0 + ref));
  }
}
