// permute against index arithmetic: every permutation of a 4-d shape, element sizes 2/4/8,
// size-1 axes, and a large case with 3 threads. Data movement only, so results are exact.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "kernels/cpu/layout.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::kernels::cpu;
using autosp::testing::OmpThreads;

namespace {

// out[j] where j walks the permuted shape = x[i] with i from the same coordinates.
template <class T>
void check_permute(const std::vector<int64_t>& shape, const std::vector<int>& perm) {
  const size_t rank = shape.size();
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::vector<T> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<T>(i * 2654435761u + 1);  // distinct values
  std::vector<T> out(n);
  permute(reinterpret_cast<const float*>(x.data()), reinterpret_cast<float*>(out.data()), shape, perm, sizeof(T));

  std::vector<int64_t> x_stride(rank, 1);
  for (size_t d = rank - 1; d-- > 0;) x_stride[d] = x_stride[d + 1] * shape[d + 1];
  std::vector<int64_t> coord(rank, 0);  // coordinates in the output shape
  for (int64_t j = 0; j < n; ++j) {
    int64_t src = 0;
    for (size_t i = 0; i < rank; ++i) src += coord[i] * x_stride[perm[i]];
    CAPTURE(j);
    REQUIRE(out[j] == x[src]);
    for (size_t i = rank; i-- > 0;) {
      if (++coord[i] < shape[perm[i]]) break;
      coord[i] = 0;
    }
  }
}

}  // namespace

TEST_CASE("permute matches index arithmetic for all 24 permutations of a 4-d shape", "[layout]") {
  std::vector<int> perm = {0, 1, 2, 3};
  do {
    CAPTURE(perm);
    check_permute<uint32_t>({2, 3, 5, 7}, perm);
  } while (std::next_permutation(perm.begin(), perm.end()));
}

TEST_CASE("permute moves 2- and 8-byte elements and skips size-1 axes", "[layout]") {
  check_permute<uint16_t>({3, 4, 5}, {2, 0, 1});
  check_permute<uint64_t>({3, 4, 5}, {1, 2, 0});
  check_permute<uint32_t>({3, 1, 4, 1, 5}, {4, 1, 0, 3, 2});
  check_permute<uint32_t>({3, 1, 4, 1, 5}, {0, 3, 2, 1, 4});  // 4 follows 3 only across a size-1 axis: not mergeable
  check_permute<uint32_t>({1, 1}, {1, 0});
  check_permute<uint32_t>({6, 5}, {0, 1});  // identity: one flat copy
}

TEST_CASE("permute [B,T,H,D] -> [B,H,T,D] with 3 threads matches index arithmetic", "[layout]") {
  const OmpThreads threads(3);
  check_permute<uint32_t>({2, 129, 6, 33}, {0, 2, 1, 3});
  check_permute<uint32_t>({2, 129, 6, 33}, {3, 1, 0, 2});
}
