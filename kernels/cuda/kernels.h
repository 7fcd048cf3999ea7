// CUDA kernels' launchers, one section per file. Mixed precision: activations are bf16 or fp32
// (the templates below are instantiated for T ∈ {float, bf16}), parameters that feed norms may
// be fp32 masters or bf16 copies (W ∈ {float, bf16}), and all arithmetic and accumulation is
// fp32 (double where noted). Same semantics as the CPU kernels of the same name in kernels/cpu;
// tests/cuda compares every kernel and dtype with them.
//
// Every launcher takes device pointers and a stream, checks its sizes, enqueues its work
// (never synchronising the host), and checks the launch. Every reduction has an order fixed by
// the sizes alone — no atomics on floats — so results repeat bit for bit on the same GPU.
// Scratch is always the caller's (the runtime plans it like any other buffer), at least 16-byte
// aligned (cudaMalloc's are 256); each op that needs some says how much. Outputs must not
// overlap inputs unless the op says they may.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cuda/norm_scratch.h"

namespace autosp::kernels::cuda {

using bf16 = __nv_bfloat16;

// matmul.cu — cuBLASLt, the contract of kernels/cpu/matmul.h: row-major, op(A) M×K, op(B) K×N,
// C = alpha·op(A)·op(B) + beta·C, a shared B (b_broadcast) folds the batch into M. fp32
// accumulation always; the overloads pick storage: bf16 → bf16, bf16 → fp32 (logits, fp32
// accumulators), fp32 → fp32 (CUBLAS_COMPUTE_32F: exact fp32, no TF32). Any pointer alignment.
// With X, C = alpha·op(A)·op(B) + beta·X: X has C's shape and type and may be C itself (a
// residual add or gradient sum in the GEMM's epilogue, rounded once).
// The context owns the handle and a workspace; its calls must stay on one stream at a time.
struct GemmContext {
  explicit GemmContext(size_t workspace_bytes = size_t(32) << 20);
  ~GemmContext();
  GemmContext(const GemmContext&) = delete;
  GemmContext& operator=(const GemmContext&) = delete;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes;
  // Descriptors and the heuristic's algorithm per GEMM shape, made on first use: a training
  // step repeats the same few shapes hundreds of times, and building them costs host time
  // comparable to a small GEMM.
  struct Plans;
  Plans* plans = nullptr;
};
void matmul(GemmContext& ctx, const bf16* A, const bf16* B, bf16* C, int64_t batch, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool b_broadcast, cudaStream_t s, float alpha = 1.0f, float beta = 0.0f,
            const bf16* X = nullptr);
void matmul(GemmContext& ctx, const bf16* A, const bf16* B, float* C, int64_t batch, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool b_broadcast, cudaStream_t s, float alpha = 1.0f, float beta = 0.0f,
            const float* X = nullptr);
void matmul(GemmContext& ctx, const float* A, const float* B, float* C, int64_t batch, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool b_broadcast, cudaStream_t s, float alpha = 1.0f, float beta = 0.0f,
            const float* X = nullptr);

// cast.cu — round to nearest even, and exact widening.
void cast_f32_to_bf16(const float* x, bf16* y, int64_t n, cudaStream_t s);
void cast_bf16_to_f32(const bf16* x, float* y, int64_t n, cudaStream_t s);

// elementwise.cu — out = a op b with suffix broadcasting (b has nb elements, nb divides na, b
// repeats over a's leading dimensions), and out = factor·x. One fp32 operation per element, so
// fp32 results equal the CPU kernel's exactly. out may be a (or b when nb == na).
enum class BinaryOp { add, sub, mul, div };
template <class T>
void binary(BinaryOp op, const T* a, const T* b, T* out, int64_t na, int64_t nb, cudaStream_t s);
template <class T>
void scale(const T* x, T* out, int64_t n, float factor, cudaStream_t s);

// activation.cu — silu, gelu (tanh approximation, as kernels/cpu), swiglu = silu(gate)·up.
template <class T>
void silu_forward(const T* x, T* y, int64_t n, cudaStream_t s);
template <class T>
void silu_backward(const T* x, const T* dy, T* dx, int64_t n, cudaStream_t s);
template <class T>
void gelu_forward(const T* x, T* y, int64_t n, cudaStream_t s);
template <class T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n, cudaStream_t s);
template <class T>
void swiglu_forward(const T* gate, const T* up, T* y, int64_t n, cudaStream_t s);
template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dy, T* dgate, T* dup, int64_t n, cudaStream_t s);

// norm.cu — RMSNorm and LayerNorm over the last axis of rows × dim; x, y, dx of T, the gain g
// and bias b (and their gradients) of W. The backward recomputes the row statistics, keeps
// them in `scratch` for the parameter-gradient pass, and overwrites dg (and db) with Σ_rows —
// deterministic, no atomics. scratch: norm_backward_scratch_bytes(rows, dim, layer_norm) —
// the row statistics (1/rms; or mean, then 1/std) and fp32 partial sums of dg (and db) per
// slice of rows (norm_scratch.h).
template <class T, class W>
void rms_norm_forward(const T* x, const W* g, T* y, int64_t rows, int64_t dim, float eps, cudaStream_t s);
template <class T, class W>
void rms_norm_backward(const T* x, const W* g, const T* dy, T* dx, W* dg, float* scratch, int64_t rows, int64_t dim,
                       float eps, cudaStream_t s);
template <class T, class W>
void layer_norm_forward(const T* x, const W* g, const W* b, T* y, int64_t rows, int64_t dim, float eps, cudaStream_t s);
template <class T, class W>
void layer_norm_backward(const T* x, const W* g, const T* dy, T* dx, W* dg, W* db, float* scratch, int64_t rows,
                         int64_t dim, float eps, cudaStream_t s);

// rope.cu — x, y [B, seq, H, D], pos [B, seq]; HF rotate_half; angles in double like the CPU
// kernel, so long positions agree with it. y may alias x. inverse rotates back (rope's VJP).
template <class T>
void rope(const T* x, const int32_t* pos, T* y, int64_t B, int64_t seq, int64_t H, int64_t D, float theta, bool inverse,
          cudaStream_t s);

// embedding.cu — y[i, :] = w[tokens[i], :]; the backward overwrites dw [vocab, dim] with
// dw[v] = Σ_{i: tokens[i] == v} dy[i], each row summed in fp32 in increasing i (the CPU
// kernel's order, so fp32 results equal it exactly). Token ids must lie in [0, vocab): the data
// loader validates them; the backward traps on one that does not (the next CUDA call fails).
// The scratch size depends on the current device (CUB sizes its sort for the architecture).
template <class T>
void embedding_forward(const int32_t* tokens, const T* w, T* y, int64_t n_tokens, int64_t dim, cudaStream_t s);
size_t embedding_backward_scratch_bytes(int64_t n_tokens, int64_t vocab);
template <class T>
void embedding_backward(const int32_t* tokens, const T* dy, T* dw, int64_t n_tokens, int64_t vocab, int64_t dim,
                        void* scratch, cudaStream_t s);

// cross_entropy.cu — fused LM head + log-softmax + NLL (kernels/cpu/cross_entropy.h's
// contract): h [N, D] and w [V, D] bf16; targets int32, ignore_index or in [0, V) (a target
// outside makes loss_sum NaN); loss_sum and count are fp32 scalars on the device, lse [N] fp32
// for every row. The backward overwrites dh [N, D] and dw [V, D] (bf16) and reads dloss =
// d(objective)/d(loss_sum) from the device, so nothing waits on the host. Logits exist only as
// one row_block × chunk fp32 tile in scratch.
struct CrossEntropyArgs {
  int64_t N = 0, D = 0, V = 0;
  int32_t ignore_index = -1;
  int64_t chunk = 4096;      // vocabulary columns per tile
  int64_t row_block = 4096;  // tokens per tile; past one block, dw sums in an fp32 [V, D] scratch
};
size_t cross_entropy_scratch_bytes(const CrossEntropyArgs& a);
void cross_entropy_forward(GemmContext& ctx, const CrossEntropyArgs& a, const bf16* h, const bf16* w,
                           const int32_t* targets, float* loss_sum, float* count, float* lse, void* scratch,
                           cudaStream_t s);
void cross_entropy_backward(GemmContext& ctx, const CrossEntropyArgs& a, const bf16* h, const bf16* w,
                            const int32_t* targets, const float* lse, const float* dloss, bf16* dh, bf16* dw,
                            void* scratch, cudaStream_t s);

// reduce.cu — `shape` is the full shape (rank ≤ 6), reduce[d] marks reduced axes.
// reduce_sum: out (the kept axes, in order) = scale·Σ x, fp32 accumulation.
// broadcast (its adjoint): out (full shape) = scale·x repeated along the reduced axes.
// sum_squares: *out = Σ x² (fp32 x, double accumulation), two passes through
// scratch: double[kSumSquaresScratch].
template <class T>
void reduce_sum(const T* x, T* out, const std::vector<int64_t>& shape, const std::vector<bool>& reduce, float scale,
                cudaStream_t s);
template <class T>
void broadcast(const T* x, T* out, const std::vector<int64_t>& shape, const std::vector<bool>& reduce, float scale,
               cudaStream_t s);
inline constexpr int64_t kSumSquaresScratch = 1024;
void sum_squares(const float* x, int64_t n, float* out, double* scratch, cudaStream_t s);

// layout.cu — byte movers for elements of 2, 4 or 8 bytes (rank ≤ 6 for permute):
// permute: out axis i is x axis perm[i]. split / concat along `axis` into / from parts of
// extents `sizes`. pack: parts laid end to end at the start of out, the rest of out_bytes
// zeroed (ZeRO buckets); unpack: the parts copied back out of x.
void permute(const void* x, void* out, const std::vector<int64_t>& shape, const std::vector<int>& perm,
             int64_t elem_bytes, cudaStream_t s);
void split(const void* x, const std::vector<void*>& parts, const std::vector<int64_t>& shape, int axis,
           const std::vector<int64_t>& sizes, int64_t elem_bytes, cudaStream_t s);
void concat(const std::vector<const void*>& parts, void* out, const std::vector<int64_t>& shape, int axis,
            const std::vector<int64_t>& sizes, int64_t elem_bytes, cudaStream_t s);
void pack(const std::vector<const void*>& parts, const std::vector<int64_t>& bytes, void* out, int64_t out_bytes,
          cudaStream_t s);
void unpack(const void* x, const std::vector<void*>& parts, const std::vector<int64_t>& bytes, cudaStream_t s);

// adamw.cu — fp32 master weights and moments; also refreshes the bf16 copy the forward reads
// (p_bf16 may be null). Same formula as kernels/cpu/adamw.h.
void adamw_step(float* p, bf16* p_bf16, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step, float grad_scale, cudaStream_t s);

}  // namespace autosp::kernels::cuda
