// Batched row-major matmul on OpenBLAS sgemm (see matmul.h).
//
// Threading: a large GEMM is threaded by OpenBLAS itself. A batch of small GEMMs (attention
// scores per head, say) gives OpenBLAS nothing to split, so those run one per OpenMP thread;
// they are kept under OpenBLAS's single-thread threshold because entering its thread pool
// from several OpenMP threads at once serialises the callers.
#include "kernels/cpu/matmul.h"

#include <cblas.h>

#include <algorithm>

#include "core/check.h"

namespace autosp::kernels::cpu {
namespace {

// OpenBLAS runs sgemm on the calling thread when M·N·K <= 65536·4 (SMP_THRESHOLD_MIN ·
// GEMM_MULTITHREAD_THRESHOLD in its interface/gemm.c).
constexpr double kBlasSingleThreadMnk = 65536.0 * 4.0;
// A batch with fewer multiply-adds than this in total stays on one thread: waking the team
// would cost more than the work.
constexpr double kParallelMinWork = 1 << 18;

void gemm(const float* A, const float* B, float* C, int64_t M, int64_t N, int64_t K, bool trans_a,
          bool trans_b, float alpha, float beta) {
  // Leading dimensions of the stored (not the transposed) matrices; max(1, ·) because BLAS
  // rejects ld = 0 even when the matrix is empty.
  const int64_t lda = std::max<int64_t>(1, trans_a ? M : K);
  const int64_t ldb = std::max<int64_t>(1, trans_b ? K : N);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, std::max<int64_t>(1, N));
}

}  // namespace

void matmul(const float* A, const float* B, float* C, int64_t batch, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool b_broadcast, float alpha, float beta) {
  AUTOSP_CHECK(batch >= 0 && M >= 0 && N >= 0 && K >= 0)
      << "matmul: negative size batch=" << batch << " M=" << M << " N=" << N << " K=" << K;
  if (batch == 0 || M == 0 || N == 0) return;
  if (b_broadcast && !trans_a) {
    // Row-major A[b] are stacked M×K blocks, i.e. one (batch·M)×K matrix against the shared B.
    gemm(A, B, C, batch * M, N, K, false, trans_b, alpha, beta);
    return;
  }
  const int64_t sa = M * K, sb = b_broadcast ? 0 : K * N, sc = M * N;
  const double mnk = double(M) * double(N) * double(K);
  if (batch > 1 && mnk <= kBlasSingleThreadMnk) {
#pragma omp parallel for schedule(static) if (batch * mnk >= kParallelMinWork)
    for (int64_t i = 0; i < batch; ++i)
      gemm(A + i * sa, B + i * sb, C + i * sc, M, N, K, trans_a, trans_b, alpha, beta);
  } else {
    for (int64_t i = 0; i < batch; ++i)
      gemm(A + i * sa, B + i * sb, C + i * sc, M, N, K, trans_a, trans_b, alpha, beta);
  }
}

}  // namespace autosp::kernels::cpu
