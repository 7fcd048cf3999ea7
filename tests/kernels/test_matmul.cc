// Batched matmul against a double triple loop, for every transpose combination, a shared
// (broadcast) B with and without trans_a, alpha/beta, sizes on both sides of the
// batch-parallel threshold, and empty K.
//
// Tolerance, per element: the standard bound for a length-K fp32 dot product,
//   |C - C_ref| <= (K + 2) · 2^-24 · (|alpha| Σ_k |a_ik||b_kj| + |beta| |C0_ij|),
// (+2 for the alpha and beta products). It is rigorous for any summation order, so a
// correct kernel cannot fail it, while a wrong index or transpose is off by O(Σ|ab|).
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::kernels::cpu;

namespace {

std::vector<float> normal(int64_t n, uint64_t stream) { return autosp::testing::normal_vec(n, 7, stream); }

// Runs matmul() and compares every element with the double reference under the bound above.
void expect_matches_reference(int64_t batch, int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool bcast,
                              float alpha, float beta) {
  INFO("batch=" << batch << " M=" << M << " N=" << N << " K=" << K << " trans_a=" << ta << " trans_b=" << tb
                << " broadcast=" << bcast << " alpha=" << alpha << " beta=" << beta);
  const std::vector<float> A = normal(batch * M * K, 1), B = normal((bcast ? 1 : batch) * K * N, 2);
  const std::vector<float> C0 = normal(batch * M * N, 3);
  std::vector<float> C = C0;
  matmul(A.data(), B.data(), C.data(), batch, M, N, K, ta, tb, bcast, alpha, beta);

  int64_t bad = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const float* a = A.data() + b * M * K;
    const float* bm = B.data() + (bcast ? 0 : b * K * N);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double dot = 0, mag = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double x = ta ? a[k * M + i] : a[i * K + k];
          const double y = tb ? bm[j * K + k] : bm[k * N + j];
          dot += x * y;
          mag += std::abs(x * y);
        }
        const double c0 = C0[(b * M + i) * N + j];
        const double ref = alpha * dot + beta * c0;
        const double bound = (K + 2) * std::ldexp(1.0, -24) * (std::abs(alpha) * mag + std::abs(beta * c0));
        if (std::abs(C[(b * M + i) * N + j] - ref) > bound) ++bad;
      }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("matmul matches the double reference for every transpose combination", "[matmul]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      expect_matches_reference(3, 5, 7, 9, ta, tb, false, 1.0f, 0.0f);
      expect_matches_reference(3, 5, 7, 9, ta, tb, false, 0.5f, -2.0f);
    }
}

TEST_CASE("matmul with a broadcast B (a weight) matches the reference, as one GEMM or per batch",
          "[matmul]") {
  for (bool ta : {false, true})  // !trans_a takes the single (batch·M)×K GEMM path
    for (bool tb : {false, true}) expect_matches_reference(4, 6, 11, 13, ta, tb, true, 1.0f, 1.0f);
}

TEST_CASE("matmul matches the reference above OpenBLAS's single-thread size, and for one matrix",
          "[matmul]") {
  // 80·72·96 > 65536·4: the batch runs serially and each GEMM may use OpenBLAS threads.
  expect_matches_reference(2, 80, 72, 96, false, true, false, 1.0f, 0.0f);
  expect_matches_reference(1, 33, 65, 17, true, false, false, 1.0f, 0.0f);
}

TEST_CASE("matmul with K = 0 leaves beta · C", "[matmul]") {
  expect_matches_reference(2, 3, 4, 0, false, false, false, 1.0f, 0.5f);
  expect_matches_reference(2, 3, 4, 0, true, true, true, 1.0f, 0.0f);
}
