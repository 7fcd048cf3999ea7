// Ring attention: exact attention over a sequence spread across the ranks of a ring, where
// each rank keeps its queries and the key/value blocks travel rank -> rank+1 (mod P).
//
// Forward: P steps; at step s a rank attends its queries to the K/V block that started on
// rank (rank - s) mod P and merges the block's (o, lse) into its running result with the
// online-softmax rule in fp32. Backward: flash-style, exact, from the merged o and lse; dq
// stays local, while each block's dk/dv accumulator travels one hop behind its K/V block and
// arrives back on its owner after P hops. In both, the next transfer is in flight while the
// current block is computed (double buffering), so communication overlaps compute.
//
// Token layout is free: idx says which global token each local row is (zigzag, contiguous,
// or any other), and causality and document masking compare global indices and segment ids.
// Every rank must hold the same number T of local tokens.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/comm.h"

namespace autosp::runtime {

struct RingAttentionArgs {
  int64_t B = 1, T = 0, H = 1, Hkv = 1, D = 0;  // T: local tokens per rank
  bool causal = true;
  float scale = 1.0f;
  const int32_t* idx = nullptr;  // [B, T] global token index of each local token (k_idx <= q_idx is visible)
  const int32_t* seg = nullptr;  // [B, T] document ids, or null for one document
  // idx is zigzag_indices(P·T, P, ring rank) in every batch row (the compiler's layout,
  // ir::RingAttentionAttrs::zigzag): zigzag_piece then says on the host which keys of each
  // block the queries see. The CPU ring checks the claim against idx.
  bool zigzag = false;
};

// q, o: [B, T, H, D]   k, v: [B, T, Hkv, D]   lse: [B, H, T] (natural log; -inf where a query
// sees no key, with o = 0 there). Collective over ring.
void ring_attention_forward(Communicator& ring, const RingAttentionArgs& a, const float* q, const float* k,
                            const float* v, float* o, float* lse);

// Gradients from dout [B, T, H, D] and the forward's o and lse; dq [B, T, H, D] and dk, dv
// [B, T, Hkv, D] (of this rank's own K/V rows) are overwritten. Collective over ring.
void ring_attention_backward(Communicator& ring, const RingAttentionArgs& a, const float* q, const float* k,
                             const float* v, const float* o, const float* lse, const float* dout, float* dq,
                             float* dk, float* dv);

// The schedule above is written once, against the block operations of one backend: RingOps
// (the CPU's fp32 kernels here, the CUDA kernels in runtime/cuda/ring_attention_cuda.h). An
// implementation holds the op's tensors (q, k, v, o, lse; in backward also dout, dq, dk, dv)
// and its scratch; the schedule owns the two travelling block buffers' layout, the ring steps,
// double buffering and the dk/dv accumulators that travel one hop behind their K/V block.
// Pointers handed to the ops are in the ops' memory (host or device), as are a.idx and a.seg.

// One K/V block in a travelling buffer: k, v [B, T, Hkv, D] of kv_elem_bytes() each; idx,
// seg [B, T] (seg null without segments); dk, dv [B, T, Hkv, D] accumulators of
// acc_elem_bytes() each (backward only, else null).
struct RingBlock {
  void *k = nullptr, *v = nullptr;
  int32_t *idx = nullptr, *seg = nullptr;
  void *dk = nullptr, *dv = nullptr;
  int origin = 0;  // the ring rank the block started on
};

// With the zigzag layout (T even: chunks i and 2P-1-i of T/2 tokens on rank i), the keys of
// the block that started on ring rank `origin` that rank `rank`'s queries see form one piece:
// queries [q0, q1) see keys [k0, k1), all of them, or causally by local row (k - k0 <= q - q0)
// when `causal` is set. Every other (query, key) pair is hidden:
//   origin == rank: every row, causal (the positions increase along the rows);
//   origin <  rank: every query sees the block's early chunk, none its late one;
//   origin >  rank: only the late chunk's queries, and they see the whole block.
// Without causality every query sees every key. A device runs a piece as one plain attention
// call; segment ids, when present, still hide more (tests/runtime/test_ring_attention.cc
// checks the pieces against the positions' mask).
struct RingPiece {
  int64_t q0 = 0, q1 = 0, k0 = 0, k1 = 0;
  bool causal = false;
};
RingPiece zigzag_piece(int64_t T, int rank, int origin, bool causal);

// The attention kernels' arguments (kernels/cpu or kernels/cuda AttentionArgs) for this
// rank's queries against one travelling block: positions and segments from both sides.
template <class KernelArgs>
KernelArgs block_attention_args(const RingAttentionArgs& a, const RingBlock& blk) {
  KernelArgs r;
  r.B = a.B, r.Tq = a.T, r.Tk = a.T, r.H = a.H, r.Hkv = a.Hkv, r.D = a.D;
  r.causal = a.causal, r.scale = a.scale;
  r.q_pos = a.idx, r.k_pos = blk.idx;
  if (a.seg) r.q_seg = a.seg, r.k_seg = blk.seg;
  return r;
}

class RingOps {
 public:
  virtual ~RingOps() = default;
  virtual size_t kv_elem_bytes() const = 0;   // one element of k and v
  virtual size_t acc_elem_bytes() const = 0;  // one element of the travelling dk/dv accumulators
  // Travelling buffer `which` (0 or 1) of at least `bytes`, 16-aligned, for this op's duration.
  virtual std::byte* block_buffer(int which, size_t bytes) = 0;
  // dst's k, v, idx, seg := this rank's own block.
  virtual void load(const RingBlock& dst) = 0;
  virtual void zero(void* dst, size_t bytes) = 0;
  // True when no local query can see any key of the block (the step is skipped). An
  // implementation that cannot read indices cheaply answers false: the block is then
  // computed and contributes nothing (lse = -inf, zero gradients).
  virtual bool hidden(const RingBlock& blk) = 0;
  // Called before each exchange: buffers the communicator reads or writes must be ready for
  // it (a device implementation with a blocking communicator waits for its stream).
  virtual void before_exchange() {}
  // Called after each exchange completed (wait() returned): a device implementation whose
  // exchanges are enqueued on another stream orders its next reads of the received buffer
  // after them.
  virtual void after_exchange() {}

  // Forward: the running result (o, lse) := the block's result (first) or its merge with it.
  virtual void attend(const RingBlock& blk, bool first) = 0;
  // o, lse := the running result; have_result false: o = 0, lse = -inf.
  virtual void finish_forward(bool have_result) = 0;

  // Backward: the block's gradient contributions: dq := (first) or += its dq part; its dk, dv
  // parts are kept for keep_grads.
  virtual void attend_backward(const RingBlock& blk, bool first) = 0;
  // acc_dk, acc_dv (accumulators [B, T, Hkv, D]) := (first) or += the last dk, dv parts.
  virtual void keep_grads(void* acc_dk, void* acc_dv, bool first) = 0;
  // dk, dv := the complete accumulators of this rank's block; have_dq false: dq = 0.
  virtual void finish_backward(const void* acc_dk, const void* acc_dv, bool have_dq) = 0;
};

// The schedules themselves, on any RingOps (the float overloads above are these on the CPU's).
void ring_attention_forward(Communicator& ring, const RingAttentionArgs& a, RingOps& ops);
void ring_attention_backward(Communicator& ring, const RingAttentionArgs& a, RingOps& ops);

// Bytes of one travelling block buffer (a call holds two) for these sizes (a.seg non-null:
// with segment ids) and element sizes; with_grads: the backward's, dk/dv accumulators included.
// For memory plans.
int64_t ring_block_bytes(const RingAttentionArgs& a, size_t kv_elem_bytes, size_t acc_elem_bytes, bool with_grads);

// All of a ring op's own memory beside the arena, for memory plans: two travelling blocks
// sized for the backward, and the block operations' work space — CpuRingOps' per-call
// vectors below, or on CUDA the grow-only buffers runtime/cuda/ring_attention_cuda.cc carves
// in 256-byte pieces (tests/cuda/test_cuda_ring.cc checks it allocates exactly this).
int64_t ring_buffer_bytes(const RingAttentionArgs& a, bool cuda);

// The CPU's RingOps for one forward or backward call (what the float overloads run), for
// tests that wrap them. a and the pointers must outlive the object.
std::unique_ptr<RingOps> cpu_ring_forward_ops(const RingAttentionArgs& a, const float* q, const float* k,
                                              const float* v, float* o, float* lse);
std::unique_ptr<RingOps> cpu_ring_backward_ops(const RingAttentionArgs& a, const float* q, const float* k,
                                               const float* v, const float* o, const float* lse, const float* dout,
                                               float* dq, float* dk, float* dv);

// Load-balanced causal layout: the global indices of rank's tokens, in order: chunks rank and
// 2P-1-rank of size T_total / (2P) (T_total divisible by 2P).
std::vector<int32_t> zigzag_indices(int64_t T_total, int P, int rank);
// Plain layout: chunk rank of size T_total / P (T_total divisible by P).
std::vector<int32_t> contiguous_indices(int64_t T_total, int P, int rank);

}  // namespace autosp::runtime
