// Flash-style attention on the CPU: blocked over queries and keys with an online softmax,
// so memory is O(T * head_dim), never T^2. fp32 throughout.
//
// Layout (sequence-major, as produced by the QKV projections without a permute):
//   q, o, dq: [B, Tq, H, D]     k, v, dk, dv: [B, Tk, Hkv, D]     lse: [B, H, Tq] (natural log)
// GQA: query head h uses kv head h / (H / Hkv).
// Masking: key j is visible to query i when
//   (!causal || k_pos[j] <= q_pos[i]) && (q_seg == null || q_seg[i] == k_seg[j]).
// Positions default to 0..T-1 and segments to "one document". Passing explicit positions and
// Tq != Tk is how ring attention computes one (query block, key block) pair.
// A query row that sees no key gets o = 0 and lse = -inf (a ring step may do that).
// Default positions are 0..Tq-1 and 0..Tk-1 independently (top-left aligned), so Tq != Tk
// with causal masking wants explicit positions.
//
// Cost and determinism (attention.cc): fp32 sgemm on query×key tiles; tiles hidden by the
// mask are skipped (per-block min/max of positions and segments), so causal costs half.
// Scratch is O(tile² + tile·D) per thread plus O(B·H·Tq) in backward. Results are bitwise
// reproducible for given OpenMP and OpenBLAS thread counts (the tiling and backward schedule
// depend on them, so different counts differ in the last bits).
#pragma once
#include <cstdint>

namespace autosp::kernels::cpu {

struct AttentionArgs {
  int64_t B = 1, Tq = 0, Tk = 0, H = 1, Hkv = 1, D = 0;
  bool causal = true;
  float scale = 1.0f;                // usually 1/sqrt(D)
  const int32_t* q_pos = nullptr;    // [B, Tq] or null
  const int32_t* k_pos = nullptr;    // [B, Tk] or null
  const int32_t* q_seg = nullptr;    // [B, Tq] or null (then k_seg must be null too)
  const int32_t* k_seg = nullptr;    // [B, Tk] or null
};

void attention_forward(const AttentionArgs& a, const float* q, const float* k, const float* v, float* o,
                       float* lse);

// Gradients given dO. dq, dk, dv are overwritten. lse is the forward's (for ring: the merged
// lse over all key blocks, which makes this the exact per-block backward). o likewise must be
// the merged output: it enters through delta_i = rowsum(dO ∘ O). Rows with lse = -inf get
// zero gradient.
void attention_backward(const AttentionArgs& a, const float* q, const float* k, const float* v,
                        const float* o, const float* lse, const float* dout, float* dq, float* dk,
                        float* dv);

}  // namespace autosp::kernels::cpu
