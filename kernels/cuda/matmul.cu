// Batched GEMM through cuBLASLt with fp32 accumulation: bf16 → bf16, bf16 → fp32 and
// fp32 → fp32 storage. Same contract as kernels/cpu/matmul.h (row-major; op(A) M×K, op(B)
// K×N; C = alpha·op(A)·op(B) + beta·C; a shared B folds the batch into M). cuBLASLt is
// column-major, and a row-major X is the column-major Xᵀ, so we ask for
// Cᵀ = op(B)ᵀ · op(A)ᵀ: B is the first operand, A the second. With a separate X, cuBLASLt's
// C is X and its D our C (same layout, different pointers): the fused residual add / gradient
// sum of the fuse_accumulate pass.
//
// The heuristic assumes 256-byte-aligned operands unless told otherwise, and the kernel it
// picks may then fault on a pointer into the middle of a buffer (a row block of h, a chunk of
// the LM head). So each call states the actual alignment of every operand (its address and,
// when batched, its batch stride).
#include <cublasLt.h>

#include <map>
#include <tuple>

#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"

#define CUBLAS_CHECK(call)                                                                                          \
  do {                                                                                                              \
    cublasStatus_t autosp_st_ = (call);                                                                             \
    AUTOSP_CHECK(autosp_st_ == CUBLAS_STATUS_SUCCESS) << #call << " failed: " << cublasGetStatusString(autosp_st_); \
  } while (0)

namespace autosp::kernels::cuda {

namespace {

// A row-major [rows, cols] matrix seen by cuBLASLt: column-major [cols, rows], ld = cols.
cublasLtMatrixLayout_t layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l;
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, uint64_t(cols), uint64_t(rows), cols));
  if (batch > 1) {
    const int32_t count = int32_t(batch);
    CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
    CUBLAS_CHECK(
        cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  }
  return l;
}

// The largest power of two (≤ 256) dividing the address and, when batched, the batch stride.
uint32_t alignment(const void* p, int64_t batch, int64_t stride_bytes) {
  uint64_t bits = reinterpret_cast<uintptr_t>(p) | 256u;
  if (batch > 1) bits |= uint64_t(stride_bytes);
  return uint32_t(bits & (~bits + 1));
}

void set_alignment(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, uint32_t bytes) {
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &bytes, sizeof bytes));
}

size_t type_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

// Everything the descriptors and the algorithm choice depend on: types, sizes, transposes,
// B's batch stride, the alignments of A, B, X (cuBLASLt's C) and C (its D), and whether X is
// a buffer of its own (not every algorithm writes D out of place).
using PlanKey = std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, bool, bool, int64_t, uint32_t, uint32_t,
                           uint32_t, uint32_t, bool>;

bool writes_out_of_place(const cublasLtMatmulAlgo_t& algo) {
  int32_t ok = 0;
  size_t written = 0;
  CUBLAS_CHECK(
      cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_OUT_OF_PLACE_RESULT_SUPPORT, &ok, sizeof ok, &written));
  return ok != 0;
}

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  // No candidate writes D apart from C: X is copied into C first and the GEMM accumulates in
  // place (one extra read and write of C, and never a failed step).
  bool copy_x = false;
};

}  // namespace

struct GemmContext::Plans {
  std::map<PlanKey, Plan> by_key;
};

namespace {

// C = alpha·op(A)·op(B) + beta·X, X = C unless given.
void gemm(GemmContext& ctx, cudaDataType_t ab_type, cudaDataType_t c_type, const void* A, const void* B, void* C,
          int64_t batch, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, bool b_broadcast, cudaStream_t s,
          float alpha, float beta, const void* X) {
  if (!X) X = C;
  AUTOSP_CHECK(batch >= 0 && M >= 0 && N >= 0 && K >= 0) << "matmul " << batch << "x" << M << "x" << N << "x" << K;
  AUTOSP_CHECK(!(b_broadcast && trans_a && batch > 1)) << "a shared B needs trans_a = false";
  if (batch == 0 || M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum (a weight gradient over zero tokens): cuBLASLt rejects ld = 0
    const int64_t n = batch * M * N;
    if (beta == 0.0f)  // BLAS semantics: X is not read, so garbage in it must not survive as NaN
      CUDA_CHECK(cudaMemsetAsync(C, 0, size_t(n) * type_size(c_type), s));
    else if (c_type == CUDA_R_32F)
      scale(static_cast<const float*>(X), static_cast<float*>(C), n, beta, s);
    else
      scale(static_cast<const bf16*>(X), static_cast<bf16*>(C), n, beta, s);
    return;
  }
  if (b_broadcast && !trans_a) {  // one GEMM over all rows of the batch
    M *= batch;
    batch = 1;
  }
  const int64_t b_stride = b_broadcast ? 0 : K * N;
  const int64_t ab = int64_t(type_size(ab_type)), c = int64_t(type_size(c_type));
  // cuBLASLt's A is our B, its B our A, its C our X and its D our C.
  const bool out_of_place = X != C;
  const uint32_t align_a = alignment(B, batch, b_stride * ab), align_b = alignment(A, batch, M * K * ab),
                 align_x = alignment(X, batch, M * N * c), align_c = alignment(C, batch, M * N * c);
  const PlanKey key{int(ab_type), int(c_type), batch, M, N, K, trans_a, trans_b, b_stride,
                    align_a, align_b, align_x, align_c, out_of_place};
  auto found_plan = ctx.plans->by_key.find(key);
  if (found_plan == ctx.plans->by_key.end()) {
    Plan p;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                            op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second));
    // Stored shapes (row-major): B is [K, N] or, transposed, [N, K]; A is [M, K] or [K, M].
    p.lb = layout(ab_type, trans_b ? N : K, trans_b ? K : N, batch, b_stride);
    p.la = layout(ab_type, trans_a ? K : M, trans_a ? M : K, batch, M * K);
    p.lc = layout(c_type, M, N, batch, M * N);

    // C and D share one layout (X has C's shape); the heuristic cannot tell they are different
    // buffers, so an out-of-place call takes the best candidate that supports it.
    constexpr int kCandidates = 8;
    cublasLtMatmulHeuristicResult_t heuristic[kCandidates]{};
    auto candidates = [&](uint32_t c_align, int wanted) {
      cublasLtMatmulPreference_t pref;
      CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                        &ctx.workspace_bytes, sizeof ctx.workspace_bytes));
      set_alignment(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a);
      set_alignment(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b);
      set_alignment(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, c_align);
      set_alignment(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c);
      int found = 0;
      CUBLAS_CHECK(
          cublasLtMatmulAlgoGetHeuristic(ctx.handle, p.desc, p.lb, p.la, p.lc, p.lc, pref, wanted, heuristic, &found));
      cublasLtMatmulPreferenceDestroy(pref);
      return found;
    };
    int found = candidates(align_x, out_of_place ? kCandidates : 1), pick = 0;
    while (out_of_place && pick < found && !writes_out_of_place(heuristic[pick].algo)) ++pick;
    if (out_of_place && pick == found) {  // C is then X's copy, with C's own alignment
      p.copy_x = true;
      found = candidates(align_c, 1);
      pick = 0;
    }
    AUTOSP_CHECK(pick < found) << "cuBLASLt has no algorithm for matmul " << M << "x" << N << "x" << K;
    p.algo = heuristic[pick].algo;
    found_plan = ctx.plans->by_key.emplace(key, p).first;
  }
  const Plan& p = found_plan->second;
  if (p.copy_x) {
    CUDA_CHECK(cudaMemcpyAsync(C, X, size_t(batch * M * N * c), cudaMemcpyDeviceToDevice, s));
    X = C;
  }
  CUBLAS_CHECK(cublasLtMatmul(ctx.handle, p.desc, &alpha, B, p.lb, A, p.la, &beta, X, p.lc, C, p.lc, &p.algo,
                              ctx.workspace, ctx.workspace_bytes, s));
}

}  // namespace

// launchers

GemmContext::GemmContext(size_t bytes) : workspace_bytes(bytes), plans(new Plans) {
  CUBLAS_CHECK(cublasLtCreate(&handle));
  CUDA_CHECK(cudaMalloc(&workspace, workspace_bytes));
}

GemmContext::~GemmContext() {
  for (auto& [key, p] : plans->by_key) {
    cublasLtMatrixLayoutDestroy(p.lc);
    cublasLtMatrixLayoutDestroy(p.la);
    cublasLtMatrixLayoutDestroy(p.lb);
    cublasLtMatmulDescDestroy(p.desc);
  }
  delete plans;
  cudaFree(workspace);
  cublasLtDestroy(handle);
}

void matmul(GemmContext& ctx, const bf16* A, const bf16* B, bf16* C, int64_t batch, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool b_broadcast, cudaStream_t s, float alpha, float beta, const bf16* X) {
  gemm(ctx, CUDA_R_16BF, CUDA_R_16BF, A, B, C, batch, M, N, K, trans_a, trans_b, b_broadcast, s, alpha, beta, X);
}

void matmul(GemmContext& ctx, const bf16* A, const bf16* B, float* C, int64_t batch, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool b_broadcast, cudaStream_t s, float alpha, float beta, const float* X) {
  gemm(ctx, CUDA_R_16BF, CUDA_R_32F, A, B, C, batch, M, N, K, trans_a, trans_b, b_broadcast, s, alpha, beta, X);
}

void matmul(GemmContext& ctx, const float* A, const float* B, float* C, int64_t batch, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool b_broadcast, cudaStream_t s, float alpha, float beta, const float* X) {
  gemm(ctx, CUDA_R_32F, CUDA_R_32F, A, B, C, batch, M, N, K, trans_a, trans_b, b_broadcast, s, alpha, beta, X);
}

}  // namespace autosp::kernels::cuda
