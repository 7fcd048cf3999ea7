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
#include <cstdint>
#include <vector>

#include "runtime/comm.h"

namespace autosp::runtime {

struct RingAttentionArgs {
  int64_t B = 1, T = 0, H = 1, Hkv = 1, D = 0;  // T: local tokens per rank
  bool causal = true;
  float scale = 1.0f;
  const int32_t* idx = nullptr;  // [B, T] global token index of each local token (k_idx <= q_idx is visible)
  const int32_t* seg = nullptr;  // [B, T] document ids, or null for one document
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

// Load-balanced causal layout: the global indices of rank's tokens, in order: chunks rank and
// 2P-1-rank of size T_total / (2P) (T_total divisible by 2P).
std::vector<int32_t> zigzag_indices(int64_t T_total, int P, int rank);
// Plain layout: chunk rank of size T_total / P (T_total divisible by P).
std::vector<int32_t> contiguous_indices(int64_t T_total, int P, int rank);

}  // namespace autosp::runtime
