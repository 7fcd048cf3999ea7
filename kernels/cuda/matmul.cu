// Batched GEMM through cuBLASLt: bf16 operands, fp32 accumulation, bf16 result. Same
// contract as kernels/cpu/matmul.h (row-major; op(A) M×K, op(B) K×N; a shared B folds the
// batch into M). cuBLASLt is column-major, and a row-major X is the column-major Xᵀ, so we
// ask for Cᵀ = op(B)ᵀ · op(A)ᵀ: B is the first operand, A the second.
#include <cublasLt.h>

#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"

#define CUBLAS_CHECK(call)                                                                                   \
  do {                                                                                                       \
    cublasStatus_t autosp_st_ = (call);                                                                      \
    AUTOSP_CHECK(autosp_st_ == CUBLAS_STATUS_SUCCESS) << #call << " failed: " << cublasGetStatusString(autosp_st_); \
  } while (0)

namespace autosp::kernels::cuda {

namespace {
// A row-major [rows, cols] matrix seen by cuBLASLt: column-major [cols, rows], ld = cols.
cublasLtMatrixLayout_t layout(int64_t rows, int64_t cols, int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, uint64_t(cols), uint64_t(rows), cols));
  if (batch > 1) {
    const int32_t count = int32_t(batch);
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                  sizeof stride));
  }
  return l;
}
}  // namespace

// launchers

GemmContext::GemmContext(size_t bytes) : workspace_bytes(bytes) {
  CUBLAS_CHECK(cublasLtCreate(&handle));
  CUDA_CHECK(cudaMalloc(&workspace, workspace_bytes));
}

GemmContext::~GemmContext() {
  cudaFree(workspace);
  cublasLtDestroy(handle);
}

void matmul(GemmContext& ctx, const bf16* A, const bf16* B, bf16* C, int64_t batch, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool b_broadcast, cudaStream_t s) {
  AUTOSP_CHECK(batch >= 1 && M >= 0 && N >= 0 && K >= 0) << "matmul " << batch << "x" << M << "x" << N << "x" << K;
  AUTOSP_CHECK(!(b_broadcast && trans_a && batch > 1)) << "a shared B needs trans_a = false";
  if (M == 0 || N == 0) return;
  if (b_broadcast && !trans_a) {  // one GEMM over all rows of the batch
    M *= batch;
    batch = 1;
  }
  cublasLtMatmulDesc_t desc;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
  // Stored shapes (row-major): B is [K, N] or, transposed, [N, K]; A is [M, K] or [K, M].
  cublasLtMatrixLayout_t lb = layout(trans_b ? N : K, trans_b ? K : N, batch, b_broadcast ? 0 : K * N);
  cublasLtMatrixLayout_t la = layout(trans_a ? K : M, trans_a ? M : K, batch, M * K);
  cublasLtMatrixLayout_t lc = layout(M, N, batch, M * N);

  cublasLtMatmulPreference_t pref;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &ctx.workspace_bytes, sizeof ctx.workspace_bytes));
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.handle, desc, lb, la, lc, lc, pref, 1, &heuristic, &found));
  AUTOSP_CHECK(found > 0) << "cuBLASLt has no algorithm for matmul " << M << "x" << N << "x" << K;
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(ctx.handle, desc, &alpha, B, lb, A, la, &beta, C, lc, C, lc, &heuristic.algo,
                              ctx.workspace, ctx.workspace_bytes, s));
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatmulDescDestroy(desc);
}

}  // namespace autosp::kernels::cuda
