// The shape simplifications the CPU and CUDA reduce / layout kernels share (kernels/shape_walk.h),
// checked on the shapes the models produce: what the walks look like, not how kernels use them
// (test_reduce.cc and test_layout.cc check the results of every axis subset and permutation).
#include <catch2/catch.hpp>

#include <vector>

#include "kernels/shape_walk.h"

using namespace autosp::kernels::shape_walk;

namespace {

std::vector<int64_t> sizes(const std::vector<ReduceGroup>& g) {
  std::vector<int64_t> out;
  for (const ReduceGroup& x : g) out.push_back(x.size);
  return out;
}
std::vector<int64_t> strides(const std::vector<ReduceGroup>& g) {
  std::vector<int64_t> out;
  for (const ReduceGroup& x : g) out.push_back(x.stride);
  return out;
}

}  // namespace

TEST_CASE("coalesce drops size-1 axes and merges neighbours with the same flag", "[shape_walk]") {
  // A bias gradient: [B, T, 1, E] reducing B and T is [B·T | E].
  const auto bias = coalesce({2, 3, 1, 5}, {true, true, false, false});
  REQUIRE(sizes(bias) == std::vector<int64_t>{6, 5});
  CHECK(bias[0].reduced);
  CHECK(!bias[1].reduced);
  CHECK(strides(bias) == std::vector<int64_t>{5, 1});
  // Alternating groups keep the full layout's strides.
  const auto alt = coalesce({2, 3, 4, 5}, {false, true, true, false});
  REQUIRE(sizes(alt) == std::vector<int64_t>{2, 12, 5});
  CHECK(strides(alt) == std::vector<int64_t>{60, 5, 1});
  CHECK(coalesce({1, 1}, {true, false}).empty());
  CHECK(product({2, 3, 4}, {true, false, true}, true) == 8);
  CHECK(product({2, 3, 4}, {true, false, true}, false) == 3);
}

TEST_CASE("broadcast strides walk the compact input, standing still along reduced groups", "[shape_walk]") {
  auto g = coalesce({2, 3, 4, 5}, {false, true, true, false});
  restride_for_broadcast(g);
  CHECK(strides(g) == std::vector<int64_t>{5, 0, 1});
}

TEST_CASE("permute_walk merges axes that stay consecutive and keeps the rest in output order", "[shape_walk]") {
  // [B, T, H, D] -> [B, H, T, D]: nothing merges; x strides of the output's axes.
  PermuteWalk w = permute_walk({2, 3, 4, 5}, {0, 2, 1, 3}, 4);
  CHECK(w.n == 120);
  REQUIRE(w.axes.size() == 4);
  CHECK(w.axes[1].size == 4);
  CHECK(w.axes[1].x_stride == 5);
  CHECK(w.axes[2].x_stride == 20);
  // A size-1 axis between two x-consecutive axes does not stop them merging.
  w = permute_walk({4, 1, 6, 7}, {2, 3, 0, 1}, 2);
  REQUIRE(w.axes.size() == 2);
  CHECK(w.axes[0].size == 42);
  CHECK(w.axes[0].x_stride == 1);
  CHECK(w.axes[1].size == 4);
  CHECK(w.axes[1].x_stride == 42);
  // The identity is one flat axis; all size-1 axes one element.
  w = permute_walk({2, 3, 4}, {0, 1, 2}, 8);
  REQUIRE(w.axes.size() == 1);
  CHECK(w.axes[0].size == 24);
  CHECK(w.axes[0].x_stride == 1);
  w = permute_walk({1, 1}, {1, 0}, 4);
  REQUIRE(w.axes.size() == 1);
  CHECK(w.axes[0].size == 1);
  CHECK(w.n == 1);
}

TEST_CASE("outer_inner splits a shape around an axis into rows and bytes per step", "[shape_walk]") {
  const auto [outer, inner] = outer_inner({2, 3, 4, 5}, 1, 2);
  CHECK(outer == 2);
  CHECK(inner == 40);
}
