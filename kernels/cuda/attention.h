// Attention forward and backward on CUDA: bf16 q/k/v/o and gradients, fp32 lse and fp32 math.
// Same contract as kernels/cpu/attention.h (tests/cuda/test_cuda_attention.cc compares them):
//   q, o, dq: [B, Tq, H, D]     k, v, dk, dv: [B, Tk, Hkv, D]     lse: [B, H, Tq] fp32,
//   the natural-log logsumexp of the scaled scores; GQA head h reads kv head h / (H / Hkv);
//   key j is visible to query i iff (!causal || k_pos[j] <= q_pos[i]) && (no segments ||
//   q_seg[i] == k_seg[j]); positions default to 0..Tq-1 and 0..Tk-1 (top-left aligned); a row
//   that sees no key gets o = 0 and lse = -inf.
//
// Two implementations:
//   cuDNN SDPA (attention_cudnn.cc, through the cuDNN frontend graph API) for default
//     positions, D % 8 == 0 and whatever else cuDNN's support check accepts for the shape,
//     packed documents included (one segment tensor for queries and keys, run as cuDNN's
//     ragged layout; attention_documents.h). Built only when CMake finds the frontend headers.
//   our flash-attention kernels (attention.cu), for everything: explicit positions (ring and
//     zigzag blocks), segments (packed documents), any D <= 256. Deterministic: the backward
//     writes dK/dV and dQ in two passes without atomics.
// attention_forward/backward take cuDNN when it is built, applicable and supports the shape,
// else the fallback. AUTOSP_ATTENTION=fallback in the environment (read when a context is
// created) forces the fallback everywhere, e.g. to rule cuDNN out when chasing a numerical
// difference.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>

namespace autosp::kernels::cuda {

using bf16 = __nv_bfloat16;

struct AttentionArgs {
  int64_t B = 1, Tq = 0, Tk = 0, H = 1, Hkv = 1, D = 0;
  bool causal = true;
  float scale = 1.0f;                // usually 1/sqrt(D)
  const int32_t* q_pos = nullptr;    // device [B, Tq] or null
  const int32_t* k_pos = nullptr;    // device [B, Tk] or null
  const int32_t* q_seg = nullptr;    // device [B, Tq] or null (then k_seg must be null too)
  const int32_t* k_seg = nullptr;    // device [B, Tk] or null
  // Row windows (cuDNN only; the fallback kernels and attention_forward/backward need 0): q,
  // o, dout, dq are Tq consecutive rows of [B, q_rows, H, D] allocations and k, v, dk, dv Tk
  // rows of [B, k_rows, Hkv, D], so batch strides are q_rows·H·D and k_rows·Hkv·D; lse stays
  // a packed [B, H, Tq] (cuDNN's statistics tensor is not given strides). 0 means Tq (Tk).
  // Ring attention runs a block's visible piece this way (ring_attention_cuda.cc).
  int64_t q_rows = 0, k_rows = 0;
};

struct CudnnAttention;  // attention_cudnn.cc: the cuDNN handle and the built graphs

// Per-device state of the attention calls. It serves one stream at a time: calls on different
// streams that may overlap need their own contexts (the scratch buffer is shared by the calls).
struct AttentionContext {
  AttentionContext();
  ~AttentionContext();
  AttentionContext(const AttentionContext&) = delete;
  AttentionContext& operator=(const AttentionContext&) = delete;

  // Device scratch of at least `bytes` (cuDNN's workspace; the fallback's tile ranges and
  // delta). Grown, never shrunk, so steady-state calls allocate nothing; growing waits for the
  // device (cudaFree), which only happens while shapes are still new.
  void* scratch(size_t bytes);
  size_t scratch_bytes() const { return scratch_bytes_; }
  // Told of each change in the scratch's bytes (+grown, -freed), so the owner can count the
  // device memory held beside its arena; may be empty.
  std::function<void(int64_t)> on_resize;

  // Steps: the owner calls begin_step() before each step's attention calls, declaring that a
  // segment tensor (by address and shape) holds the same documents for the rest of the step,
  // so cuDNN's document tables are built once per step, not once per call. Until the first
  // begin_step() they are built on every call.
  void begin_step() { ++step_; }
  int64_t step() const { return step_; }

  bool force_fallback = false;      // AUTOSP_ATTENTION=fallback
  CudnnAttention* cudnn = nullptr;  // created by the first cuDNN call, owned

 private:
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
  int64_t step_ = -1;
};

void attention_forward(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k, const bf16* v,
                       bf16* o, float* lse, cudaStream_t s);

// dq, dk, dv are overwritten. lse and o are the forward's (for ring attention: merged over all
// key blocks, which makes this the exact per-block backward, as on the CPU). Rows with
// lse = -inf get zero gradient.
void attention_backward(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k, const bf16* v,
                        const bf16* o, const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv,
                        cudaStream_t s);

// The flash-attention kernels of attention.cu, whatever cuDNN could do (tests and benchmarks).
void attention_forward_fallback(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k,
                                const bf16* v, bf16* o, float* lse, cudaStream_t s);
void attention_backward_fallback(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k,
                                 const bf16* v, const bf16* o, const float* lse, const bf16* dout, bf16* dq,
                                 bf16* dk, bf16* dv, cudaStream_t s);

// cuDNN SDPA directly: false, having done nothing, when this build has no cuDNN frontend, the
// arguments need the fallback (positions, segments other than one tensor over the same rows,
// documents whose ids repeat in a row, D % 8 != 0, misaligned pointers) or cuDNN rejects the
// shape (the first rejection of a shape prints cuDNN's reason to stderr). With segments it
// waits for the stream once (once per step after begin_step()): the document count picks the graph.
bool attention_cudnn_built();
// Whether the cuDNN path takes packed documents here (a cuDNN runtime of 9.6 or later).
bool attention_cudnn_documents();
bool attention_forward_cudnn(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k,
                             const bf16* v, bf16* o, float* lse, cudaStream_t s);
bool attention_backward_cudnn(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k,
                              const bf16* v, const bf16* o, const float* lse, const bf16* dout, bf16* dq, bf16* dk,
                              bf16* dv, cudaStream_t s);

// A ring attention's visiting block of packed documents (runtime/cuda/ring_attention_cuda.cc):
// the ids of the queries' and the block's whole rows, [B, q_rows] and [B, k_rows], and the
// rows where the call's windows start. The queries' ids are the same tensor every step, and are
// scanned once per step like any documents; the block's are read only on the device.
struct VisitingDocuments {
  const int32_t* q_seg = nullptr;
  const int32_t* k_seg = nullptr;
  int64_t q0 = 0, k0 = 0;
};
// cuDNN SDPA of queries (a.Tq rows of q_rows, from row d.q0) against a visiting block's keys
// (a.Tk rows of k_rows, from row d.k0) where a key is visible iff its id is the query's. a has
// no positions or segments and is not causal (a zigzag piece off the diagonal sees all its
// keys). Each query document, cut to the window, is a ragged sequence paired with the keys of
// its id, which must be one run: the block's ids in the order document_scan calls ordered (our
// data's always are; a block seen out of order fails the context's next scan). Rows that see
// no key get o = 0 and lse = -inf, and in backward zero gradients. False, having done nothing,
// as attention_forward_cudnn (the queries' ids out of order included).
bool attention_forward_cudnn_visiting(AttentionContext& ctx, const AttentionArgs& a, const VisitingDocuments& d,
                                      const bf16* q, const bf16* k, const bf16* v, bf16* o, float* lse,
                                      cudaStream_t s);
bool attention_backward_cudnn_visiting(AttentionContext& ctx, const AttentionArgs& a, const VisitingDocuments& d,
                                       const bf16* q, const bf16* k, const bf16* v, const bf16* o, const float* lse,
                                       const bf16* dout, bf16* dq, bf16* dk, bf16* dv, cudaStream_t s);

// The device workspace of cuDNN's graph for these arguments (built now if new), or -1 when
// cuDNN does not take them, they have segments (the graph depends on the documents) or this
// build has no cuDNN frontend. For tests.
int64_t attention_cudnn_workspace(AttentionContext& ctx, const AttentionArgs& a, bool backward);

// The device bytes attention_cudnn.cc holds for the context beyond its scratch (the packed
// documents' starts, reported through on_resize as they are allocated).
int64_t cudnn_attention_held_bytes(const CudnnAttention* c);

// Releases what attention_cudnn.cc created for the context (its destructor calls this) and
// returns the device bytes it held beyond the scratch (reported through on_resize).
int64_t release_cudnn_attention(CudnnAttention* c);

}  // namespace autosp::kernels::cuda
