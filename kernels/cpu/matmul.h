// Batched matmul through OpenBLAS sgemm. Row-major, contiguous.
//   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]
// op(A) is M×K (A stored K×M when trans_a); op(B) is K×N (B stored N×K when trans_b).
// b_broadcast: B is a single matrix shared by every batch (a weight); then with !trans_a the
// whole batch is one GEMM of (batch*M)×K.
#pragma once
#include <cstdint>

namespace autosp::kernels::cpu {

void matmul(const float* A, const float* B, float* C, int64_t batch, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool b_broadcast, float alpha = 1.0f, float beta = 0.0f);

}  // namespace autosp::kernels::cpu
