// Flash attention forward and backward on tensor cores (the contract is in attention.h), the
// dispatch between these kernels and cuDNN (attention_cudnn.cc), and AttentionContext.
//
// Every product is on bf16 16×16×16 WMMA fragments with fp32 accumulation, staged in shared
// memory: Q/K/V/dO tiles in bf16 (rows padded by 8 elements so that consecutive rows start in
// different banks), scores and accumulators in fp32. P and dS are rounded to bf16 for the
// products that consume them, as FlashAttention does; row statistics (max, sum, lse, delta)
// and the softmax stay fp32. The head dimension is padded to DP ∈ {64, 128, 256} with zero
// columns, which add nothing to Q·Kᵀ and produce output columns that are never stored.
//
// Work split (4 warps per block; a product's 16×16 output fragments are dealt out to them):
//   forward: a block per (query tile, head, batch) walks the key tiles with an online softmax,
//     its O accumulator in shared memory (rescaled there when the row max moves).
//   backward: delta = rowsum(dO ∘ O) first; pass 1, a block per (key tile, kv head, batch),
//     sums dK and dV over the GQA group's heads and the query tiles; pass 2, a block per
//     (query tile, head, batch), sums dQ over the key tiles. Each output element is owned by
//     one block and summed in a fixed order: deterministic, no atomics. S and dP are computed in
//     both passes, as in the CPU kernel's two-pass schedule.
// Tile skipping: a pre-pass stores each tile's min/max position and segment id (defaults: the
// index and 0), so a (query tile, key tile) pair is classified in O(1) as hidden (skipped),
// fully visible (no per-element mask) or mixed. That is exact for any positions, so causal
// attention costs half, packed documents the sum of their squares, and a ring step only the
// blocks it can see.
#include <mma.h>

#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/check.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"

namespace autosp::kernels::cuda {

// kernels

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kWarps = 4, kThreads = 32 * kWarps;
constexpr float kNegInf = -INFINITY;

// Tile sizes per padded head dim. Shared memory stays under A100's 163 KiB opt-in limit
// (static_asserts below); DP = 256 halves the key tile to get there.
template <int DP>
struct FwdTile {
  static constexpr int BQ = 64, BK = DP == 256 ? 32 : 64;
};
// The backward's query tile is smaller than the forward's: pass 1 keeps two fp32 key-tile
// accumulators (dK, dV) beside four bf16 operand tiles.
template <int DP>
struct BwdTile {
  static constexpr int BQ = 32, BK = DP == 256 ? 32 : 64;
};

struct Params {
  const bf16 *q, *k, *v, *dout;
  bf16 *out, *dq, *dk, *dv;
  float* lse_out;
  const float *lse, *delta;
  const int32_t *q_pos, *k_pos, *q_seg, *k_seg;
  const int4 *q_rng, *k_rng;  // per (batch, tile): {min pos, max pos, min seg, max seg}
  int64_t Tq, Tk;
  int H, Hkv, D, nqt, nkt;
  float scale;
  bool causal;
  bool vec;  // D % 8 == 0 and q/k/v/dout 16-byte aligned: tiles load in 16-byte vectors
};

enum TileKind { kSkip, kFull, kPartial };

// `complete`: the tile has BQ queries and BK keys (none past Tq or Tk), a condition of kFull.
__device__ TileKind classify(int4 q, int4 k, bool causal, bool complete) {
  if (causal && k.x > q.y) return kSkip;  // every key after every query
  if (k.w < q.z || k.z > q.w) return kSkip;  // no segment id in common
  const bool pos_visible = !causal || k.y <= q.x;
  const bool seg_visible = q.z == q.w && k.z == k.w && q.z == k.z;
  return pos_visible && seg_visible && complete ? kFull : kPartial;
}

__device__ bool visible(int32_t qpos, int32_t qseg, int32_t kpos, int32_t kseg, bool causal) {
  return (!causal || kpos <= qpos) && qseg == kseg;
}

// Rows of the tile that starts at row `start` of T (the last tile may be short).
__device__ int tile_rows(int tile, int64_t T, int64_t start) { return int(T - start < tile ? T - start : tile); }

// Position and segment of row `i` of batch row `b`, defaults filled in.
__device__ int32_t pos_at(const int32_t* pos, int64_t T, int b, int64_t i) {
  return pos ? pos[b * T + i] : int32_t(i);
}
__device__ int32_t seg_at(const int32_t* seg, int64_t T, int b, int64_t i) { return seg ? seg[b * T + i] : 0; }

// Rows [row0, row0 + ROWS) of one head of a [T, heads·D] bf16 matrix (src: its row 0) into
// dst[ROWS][DP + 8], zero past T and past D.
template <int ROWS, int DP>
__device__ void load_tile(bf16 (*dst)[DP + 8], const bf16* src, int64_t ld, int64_t row0, int64_t T, int D,
                          bool vec) {
  if (vec) {
    constexpr int kChunks = DP / 8;
    for (int idx = threadIdx.x; idx < ROWS * kChunks; idx += kThreads) {
      const int r = idx / kChunks, c = idx % kChunks * 8;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (row0 + r < T && c < D) val = *reinterpret_cast<const uint4*>(src + (row0 + r) * ld + c);
      *reinterpret_cast<uint4*>(&dst[r][c]) = val;
    }
  } else {
    for (int idx = threadIdx.x; idx < ROWS * DP; idx += kThreads) {
      const int r = idx / DP, c = idx % DP;
      dst[r][c] = row0 + r < T && c < D ? src[(row0 + r) * ld + c] : __float2bfloat16(0.0f);
    }
  }
}

// C (M×N fp32, ldc) = or += A (M×K bf16 row-major, lda) · B, with B stored row-major as
// Bᵀ [N×K] (kBTransposed, read as a column-major fragment) or as B [K×N]. All in shared
// memory; the M/16 × N/16 output fragments are dealt out to the warps.
template <int M, int N, int K, bool kBTransposed, bool kAccumulate>
__device__ void block_mma(const bf16* A, int lda, const bf16* B, int ldb, float* C, int ldc) {
  static_assert(M % 16 == 0 && N % 16 == 0 && K % 16 == 0, "WMMA tiles are 16x16x16");
  using LayoutB = std::conditional_t<kBTransposed, wmma::col_major, wmma::row_major>;
  constexpr int kNt = N / 16;
  for (int t = threadIdx.x / 32; t < (M / 16) * kNt; t += kWarps) {
    const int mi = t / kNt, ni = t % kNt;
    float* c_tile = C + mi * 16 * ldc + ni * 16;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    if constexpr (kAccumulate) {
      wmma::load_matrix_sync(acc, c_tile, ldc, wmma::mem_row_major);
    } else {
      wmma::fill_fragment(acc, 0.0f);
    }
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, LayoutB> b;
      wmma::load_matrix_sync(a, A + mi * 16 * lda + kk * 16, lda);
      if constexpr (kBTransposed) {
        wmma::load_matrix_sync(b, B + ni * 16 * ldb + kk * 16, ldb);
      } else {
        wmma::load_matrix_sync(b, B + kk * 16 * ldb + ni * 16, ldb);
      }
      wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(c_tile, acc, ldc, wmma::mem_row_major);
  }
}

// Per (batch, tile of `tile` rows): {min pos, max pos, min seg, max seg}. One warp per tile.
__global__ void tile_ranges_kernel(const int32_t* pos, const int32_t* seg, int64_t T, int tile, int4* out) {
  const int b = blockIdx.y;
  const int64_t i0 = int64_t(blockIdx.x) * tile, n = T - i0 < tile ? T - i0 : tile;
  int32_t plo = INT_MAX, phi = INT_MIN, slo = INT_MAX, shi = INT_MIN;
  for (int64_t r = threadIdx.x; r < n; r += 32) {
    const int32_t p = pos_at(pos, T, b, i0 + r), s = seg_at(seg, T, b, i0 + r);
    plo = min(plo, p);
    phi = max(phi, p);
    slo = min(slo, s);
    shi = max(shi, s);
  }
  for (int off = 16; off > 0; off /= 2) {
    plo = min(plo, __shfl_xor_sync(0xffffffffu, plo, off));
    phi = max(phi, __shfl_xor_sync(0xffffffffu, phi, off));
    slo = min(slo, __shfl_xor_sync(0xffffffffu, slo, off));
    shi = max(shi, __shfl_xor_sync(0xffffffffu, shi, off));
  }
  if (threadIdx.x == 0) out[int64_t(b) * gridDim.x + blockIdx.x] = make_int4(plo, phi, slo, shi);
}

template <int DP>
struct FwdShared {
  static constexpr int BQ = FwdTile<DP>::BQ, BK = FwdTile<DP>::BK;
  alignas(128) bf16 q[BQ][DP + 8];
  alignas(128) bf16 k[BK][DP + 8];
  alignas(128) bf16 v[BK][DP + 8];
  alignas(128) float s[BQ][BK + 4];  // scaled, masked scores of the current tile
  alignas(128) bf16 p[BQ][BK + 8];   // exp(s - m), the P·V operand
  alignas(128) float o[BQ][DP + 4];  // unnormalised output
  float m[BQ], l[BQ];                // running max and sum of each row
  int32_t qpos[BQ], qseg[BQ], kpos[BK], kseg[BK];
};

template <int DP>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(const Params p) {
  using Sh = FwdShared<DP>;
  constexpr int BQ = Sh::BQ, BK = Sh::BK, kRowThreads = kThreads / BQ;
  static_assert(kThreads % BQ == 0 && kRowThreads <= 32, "a row's threads share a warp");
  extern __shared__ __align__(128) unsigned char smem[];
  Sh& sh = *reinterpret_cast<Sh*>(smem);
  const int tid = threadIdx.x;
  const int qt = p.nqt - 1 - blockIdx.x;  // late (costly, if causal) query tiles first
  const int h = blockIdx.y, b = blockIdx.z, kvh = h / (p.H / p.Hkv);
  const int64_t i0 = int64_t(qt) * BQ, ldq = int64_t(p.H) * p.D, ldk = int64_t(p.Hkv) * p.D;
  const int nq = tile_rows(BQ, p.Tq, i0);
  const bf16* kbase = p.k + b * p.Tk * ldk + kvh * p.D;
  const bf16* vbase = p.v + b * p.Tk * ldk + kvh * p.D;

  load_tile<BQ, DP>(sh.q, p.q + b * p.Tq * ldq + h * p.D, ldq, i0, p.Tq, p.D, p.vec);
  for (int r = tid; r < BQ; r += kThreads) {
    sh.m[r] = kNegInf;
    sh.l[r] = 0.0f;
    sh.qpos[r] = r < nq ? pos_at(p.q_pos, p.Tq, b, i0 + r) : 0;
    sh.qseg[r] = r < nq ? seg_at(p.q_seg, p.Tq, b, i0 + r) : 0;
  }
  for (int idx = tid; idx < BQ * DP; idx += kThreads) sh.o[idx / DP][idx % DP] = 0.0f;
  const int4 q_rng = p.q_rng[int64_t(b) * p.nqt + qt];

  // This thread's share of the softmax: row r, columns sub, sub + kRowThreads, ...
  const int r = tid / kRowThreads, sub = tid % kRowThreads;
  for (int kt = 0; kt < p.nkt; ++kt) {
    const int64_t j0 = int64_t(kt) * BK;
    const int nk = tile_rows(BK, p.Tk, j0);
    const TileKind kind = classify(q_rng, p.k_rng[int64_t(b) * p.nkt + kt], p.causal, nq == BQ && nk == BK);
    if (kind == kSkip) continue;  // uniform over the block: the ranges are per tile
    __syncthreads();  // the previous tile's P·V is done with k, v and p
    load_tile<BK, DP>(sh.k, kbase, ldk, j0, p.Tk, p.D, p.vec);
    load_tile<BK, DP>(sh.v, vbase, ldk, j0, p.Tk, p.D, p.vec);
    for (int c = tid; c < BK; c += kThreads) {
      sh.kpos[c] = c < nk ? pos_at(p.k_pos, p.Tk, b, j0 + c) : 0;
      sh.kseg[c] = c < nk ? seg_at(p.k_seg, p.Tk, b, j0 + c) : 0;
    }
    __syncthreads();
    block_mma<BQ, BK, DP, true, false>(&sh.q[0][0], DP + 8, &sh.k[0][0], DP + 8, &sh.s[0][0], BK + 4);
    __syncthreads();

    float* srow = sh.s[r];
    float mx = kNegInf;
    for (int c = sub; c < BK; c += kRowThreads) {
      float x = srow[c] * p.scale;
      if (kind == kPartial &&
          !(r < nq && c < nk && visible(sh.qpos[r], sh.qseg[r], sh.kpos[c], sh.kseg[c], p.causal)))
        x = kNegInf;
      srow[c] = x;
      mx = fmaxf(mx, x);
    }
    for (int off = kRowThreads / 2; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    const float m_old = sh.m[r], m_new = fmaxf(m_old, mx);
    // m_new = -inf: this row has seen no visible key yet, so P is 0 and O has nothing to
    // rescale (and exp(-inf - -inf) would be NaN). Otherwise alpha = 0 when m_old = -inf.
    const bool none = m_new == kNegInf;
    const float alpha = none ? 1.0f : __expf(m_old - m_new);
    float sum = 0.0f;
    for (int c = sub; c < BK; c += kRowThreads) {
      const float e = none ? 0.0f : __expf(srow[c] - m_new);
      sh.p[r][c] = __float2bfloat16(e);
      sum += e;
    }
    for (int off = kRowThreads / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    // Every thread of the row read m and l before the shuffles above, so one may write them.
    if (sub == 0) {
      sh.m[r] = m_new;
      sh.l[r] = sh.l[r] * alpha + sum;
    }
    if (alpha != 1.0f)
      for (int c = sub; c < DP; c += kRowThreads) sh.o[r][c] *= alpha;
    __syncthreads();
    block_mma<BQ, DP, BK, false, true>(&sh.p[0][0], BK + 8, &sh.v[0][0], DP + 8, &sh.o[0][0], DP + 4);
  }
  __syncthreads();

  bf16* obase = p.out + b * p.Tq * ldq + h * p.D;
  for (int idx = tid; idx < BQ * DP; idx += kThreads) {
    const int rr = idx / DP, c = idx % DP;
    if (rr >= nq || c >= p.D) continue;
    // l >= 1 once a key was visible (its max term is exp(0)), so l = 0 means none was.
    const float l = sh.l[rr];
    obase[(i0 + rr) * ldq + c] = __float2bfloat16(l > 0.0f ? sh.o[rr][c] / l : 0.0f);
  }
  for (int rr = tid; rr < nq; rr += kThreads) {
    const float l = sh.l[rr];
    p.lse_out[(int64_t(b) * p.H + h) * p.Tq + i0 + rr] = l > 0.0f ? sh.m[rr] + logf(l) : kNegInf;
  }
}

// delta[b, h, i] = Σ_d dO[b, i, h, d] · O[b, i, h, d]; one warp per (b, i, h) row.
__global__ void attention_delta_kernel(const bf16* o, const bf16* dout, float* delta, int64_t rows, int64_t Tq,
                                       int H, int D) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;  // the whole warp: row is the same for its lanes
  const int lane = threadIdx.x % 32;
  float acc = 0.0f;
  for (int d = lane; d < D; d += 32) acc += __bfloat162float(o[row * D + d]) * __bfloat162float(dout[row * D + d]);
  for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) {
    const int64_t bt = row / H, b = bt / Tq, i = bt % Tq, h = row % H;
    delta[(b * H + h) * Tq + i] = acc;
  }
}

// Query-tile rows of the backward: lse (-inf for rows past Tq, which then get P = 0), delta,
// position and segment.
template <int BQ>
__device__ void load_query_rows(const Params& p, int b, int h, int64_t i0, int nq, float* lse, float* delta,
                                int32_t* qpos, int32_t* qseg) {
  for (int r = threadIdx.x; r < BQ; r += kThreads) {
    const int64_t at = (int64_t(b) * p.H + h) * p.Tq + i0 + r;
    lse[r] = r < nq ? p.lse[at] : kNegInf;
    delta[r] = r < nq ? p.delta[at] : 0.0f;
    qpos[r] = r < nq ? pos_at(p.q_pos, p.Tq, b, i0 + r) : 0;
    qseg[r] = r < nq ? seg_at(p.q_seg, p.Tq, b, i0 + r) : 0;
  }
}

// P = exp(scale·S - lse), zero where hidden, past the tile's ends, or on rows that saw no key
// (lse = -inf); returns it and dS = P ∘ (dP - delta) (unscaled: scale is applied once to the
// finished dQ and dK).
__device__ float2 probs_dscores(float s, float dp, float lse, float delta, bool shown, float scale) {
  const float pr = shown && lse != kNegInf ? __expf(s * scale - lse) : 0.0f;
  return make_float2(pr, pr * (dp - delta));
}

template <int DP>
struct DkvShared {
  static constexpr int BQ = BwdTile<DP>::BQ, BK = BwdTile<DP>::BK;
  alignas(128) bf16 q[BQ][DP + 8];
  alignas(128) bf16 dout[BQ][DP + 8];
  alignas(128) bf16 k[BK][DP + 8];
  alignas(128) bf16 v[BK][DP + 8];
  alignas(128) float st[BK][BQ + 4];   // Sᵀ = K·Qᵀ
  alignas(128) float dpt[BK][BQ + 4];  // dPᵀ = V·dOᵀ
  alignas(128) bf16 pt[BK][BQ + 8];
  alignas(128) bf16 dst[BK][BQ + 8];
  alignas(128) float dk[BK][DP + 4];
  alignas(128) float dv[BK][DP + 4];
  float lse[BQ], delta[BQ];
  int32_t qpos[BQ], qseg[BQ], kpos[BK], kseg[BK];
};

// Pass 1: dK and dV of one key tile of one kv head, summed over the group's query heads and
// all query tiles in a fixed order.
template <int DP>
__global__ void __launch_bounds__(kThreads) attention_backward_dkdv_kernel(const Params p) {
  using Sh = DkvShared<DP>;
  constexpr int BQ = Sh::BQ, BK = Sh::BK;
  extern __shared__ __align__(128) unsigned char smem[];
  Sh& sh = *reinterpret_cast<Sh*>(smem);
  const int tid = threadIdx.x, kt = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, group = p.H / p.Hkv;
  const int64_t j0 = int64_t(kt) * BK, ldq = int64_t(p.H) * p.D, ldk = int64_t(p.Hkv) * p.D;
  const int nk = tile_rows(BK, p.Tk, j0);

  load_tile<BK, DP>(sh.k, p.k + b * p.Tk * ldk + kvh * p.D, ldk, j0, p.Tk, p.D, p.vec);
  load_tile<BK, DP>(sh.v, p.v + b * p.Tk * ldk + kvh * p.D, ldk, j0, p.Tk, p.D, p.vec);
  for (int c = tid; c < BK; c += kThreads) {
    sh.kpos[c] = c < nk ? pos_at(p.k_pos, p.Tk, b, j0 + c) : 0;
    sh.kseg[c] = c < nk ? seg_at(p.k_seg, p.Tk, b, j0 + c) : 0;
  }
  for (int idx = tid; idx < BK * DP; idx += kThreads) {
    sh.dk[idx / DP][idx % DP] = 0.0f;
    sh.dv[idx / DP][idx % DP] = 0.0f;
  }
  const int4 k_rng = p.k_rng[int64_t(b) * p.nkt + kt];

  for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
    const bf16* qbase = p.q + b * p.Tq * ldq + h * p.D;
    const bf16* dobase = p.dout + b * p.Tq * ldq + h * p.D;
    for (int qt = 0; qt < p.nqt; ++qt) {
      const int64_t i0 = int64_t(qt) * BQ;
      const int nq = tile_rows(BQ, p.Tq, i0);
      const TileKind kind = classify(p.q_rng[int64_t(b) * p.nqt + qt], k_rng, p.causal, nq == BQ && nk == BK);
      if (kind == kSkip) continue;
      __syncthreads();  // the previous tile's products are done with q, dout, pt and dst
      load_tile<BQ, DP>(sh.q, qbase, ldq, i0, p.Tq, p.D, p.vec);
      load_tile<BQ, DP>(sh.dout, dobase, ldq, i0, p.Tq, p.D, p.vec);
      load_query_rows<BQ>(p, b, h, i0, nq, sh.lse, sh.delta, sh.qpos, sh.qseg);
      __syncthreads();
      block_mma<BK, BQ, DP, true, false>(&sh.k[0][0], DP + 8, &sh.q[0][0], DP + 8, &sh.st[0][0], BQ + 4);
      block_mma<BK, BQ, DP, true, false>(&sh.v[0][0], DP + 8, &sh.dout[0][0], DP + 8, &sh.dpt[0][0], BQ + 4);
      __syncthreads();
      for (int idx = tid; idx < BK * BQ; idx += kThreads) {
        const int kr = idx / BQ, qc = idx % BQ;  // key row, query column
        const bool shown = kind == kFull || (kr < nk && qc < nq &&
                                             visible(sh.qpos[qc], sh.qseg[qc], sh.kpos[kr], sh.kseg[kr], p.causal));
        const float2 pd = probs_dscores(sh.st[kr][qc], sh.dpt[kr][qc], sh.lse[qc], sh.delta[qc], shown, p.scale);
        sh.pt[kr][qc] = __float2bfloat16(pd.x);
        sh.dst[kr][qc] = __float2bfloat16(pd.y);
      }
      __syncthreads();
      // dV += Pᵀ·dO ;  dK += dSᵀ·Q (scaled at the end)
      block_mma<BK, DP, BQ, false, true>(&sh.pt[0][0], BQ + 8, &sh.dout[0][0], DP + 8, &sh.dv[0][0], DP + 4);
      block_mma<BK, DP, BQ, false, true>(&sh.dst[0][0], BQ + 8, &sh.q[0][0], DP + 8, &sh.dk[0][0], DP + 4);
    }
  }
  __syncthreads();

  bf16* dkbase = p.dk + b * p.Tk * ldk + kvh * p.D;
  bf16* dvbase = p.dv + b * p.Tk * ldk + kvh * p.D;
  for (int idx = tid; idx < BK * DP; idx += kThreads) {
    const int kr = idx / DP, c = idx % DP;
    if (kr >= nk || c >= p.D) continue;
    dkbase[(j0 + kr) * ldk + c] = __float2bfloat16(sh.dk[kr][c] * p.scale);
    dvbase[(j0 + kr) * ldk + c] = __float2bfloat16(sh.dv[kr][c]);
  }
}

template <int DP>
struct DqShared {
  static constexpr int BQ = BwdTile<DP>::BQ, BK = BwdTile<DP>::BK;
  alignas(128) bf16 q[BQ][DP + 8];
  alignas(128) bf16 dout[BQ][DP + 8];
  alignas(128) bf16 k[BK][DP + 8];
  alignas(128) bf16 v[BK][DP + 8];
  alignas(128) float s[BQ][BK + 4];   // Q·Kᵀ
  alignas(128) float dp[BQ][BK + 4];  // dO·Vᵀ
  alignas(128) bf16 ds[BQ][BK + 8];
  alignas(128) float dq[BQ][DP + 4];
  float lse[BQ], delta[BQ];
  int32_t qpos[BQ], qseg[BQ], kpos[BK], kseg[BK];
};

// Pass 2: dQ of one query tile of one head, summed over the key tiles in order.
template <int DP>
__global__ void __launch_bounds__(kThreads) attention_backward_dq_kernel(const Params p) {
  using Sh = DqShared<DP>;
  constexpr int BQ = Sh::BQ, BK = Sh::BK;
  extern __shared__ __align__(128) unsigned char smem[];
  Sh& sh = *reinterpret_cast<Sh*>(smem);
  const int tid = threadIdx.x;
  const int qt = p.nqt - 1 - blockIdx.x;  // late (costly, if causal) query tiles first
  const int h = blockIdx.y, b = blockIdx.z, kvh = h / (p.H / p.Hkv);
  const int64_t i0 = int64_t(qt) * BQ, ldq = int64_t(p.H) * p.D, ldk = int64_t(p.Hkv) * p.D;
  const int nq = tile_rows(BQ, p.Tq, i0);
  const bf16* kbase = p.k + b * p.Tk * ldk + kvh * p.D;
  const bf16* vbase = p.v + b * p.Tk * ldk + kvh * p.D;

  load_tile<BQ, DP>(sh.q, p.q + b * p.Tq * ldq + h * p.D, ldq, i0, p.Tq, p.D, p.vec);
  load_tile<BQ, DP>(sh.dout, p.dout + b * p.Tq * ldq + h * p.D, ldq, i0, p.Tq, p.D, p.vec);
  load_query_rows<BQ>(p, b, h, i0, nq, sh.lse, sh.delta, sh.qpos, sh.qseg);
  for (int idx = tid; idx < BQ * DP; idx += kThreads) sh.dq[idx / DP][idx % DP] = 0.0f;
  const int4 q_rng = p.q_rng[int64_t(b) * p.nqt + qt];

  for (int kt = 0; kt < p.nkt; ++kt) {
    const int64_t j0 = int64_t(kt) * BK;
    const int nk = tile_rows(BK, p.Tk, j0);
    const TileKind kind = classify(q_rng, p.k_rng[int64_t(b) * p.nkt + kt], p.causal, nq == BQ && nk == BK);
    if (kind == kSkip) continue;
    __syncthreads();  // the previous tile's dS·K is done with k and ds
    load_tile<BK, DP>(sh.k, kbase, ldk, j0, p.Tk, p.D, p.vec);
    load_tile<BK, DP>(sh.v, vbase, ldk, j0, p.Tk, p.D, p.vec);
    for (int c = tid; c < BK; c += kThreads) {
      sh.kpos[c] = c < nk ? pos_at(p.k_pos, p.Tk, b, j0 + c) : 0;
      sh.kseg[c] = c < nk ? seg_at(p.k_seg, p.Tk, b, j0 + c) : 0;
    }
    __syncthreads();
    block_mma<BQ, BK, DP, true, false>(&sh.q[0][0], DP + 8, &sh.k[0][0], DP + 8, &sh.s[0][0], BK + 4);
    block_mma<BQ, BK, DP, true, false>(&sh.dout[0][0], DP + 8, &sh.v[0][0], DP + 8, &sh.dp[0][0], BK + 4);
    __syncthreads();
    for (int idx = tid; idx < BQ * BK; idx += kThreads) {
      const int qr = idx / BK, kc = idx % BK;  // query row, key column
      const bool shown = kind == kFull || (qr < nq && kc < nk &&
                                           visible(sh.qpos[qr], sh.qseg[qr], sh.kpos[kc], sh.kseg[kc], p.causal));
      sh.ds[qr][kc] =
          __float2bfloat16(probs_dscores(sh.s[qr][kc], sh.dp[qr][kc], sh.lse[qr], sh.delta[qr], shown, p.scale).y);
    }
    __syncthreads();
    block_mma<BQ, DP, BK, false, true>(&sh.ds[0][0], BK + 8, &sh.k[0][0], DP + 8, &sh.dq[0][0], DP + 4);
  }
  __syncthreads();

  bf16* dqbase = p.dq + b * p.Tq * ldq + h * p.D;
  for (int idx = tid; idx < BQ * DP; idx += kThreads) {
    const int qr = idx / DP, c = idx % DP;
    if (qr >= nq || c >= p.D) continue;
    dqbase[(i0 + qr) * ldq + c] = __float2bfloat16(sh.dq[qr][c] * p.scale);
  }
}

// A100 allows 163 KiB of shared memory per block (H100: 227 KiB).
constexpr size_t kMaxShared = 163 * 1024;
static_assert(sizeof(FwdShared<256>) <= kMaxShared && sizeof(FwdShared<128>) <= kMaxShared);
static_assert(sizeof(DkvShared<256>) <= kMaxShared && sizeof(DkvShared<128>) <= kMaxShared);
static_assert(sizeof(DqShared<256>) <= kMaxShared && sizeof(DqShared<128>) <= kMaxShared);

}  // namespace

// launchers

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

size_t align_up(size_t n) { return (n + 255) / 256 * 256; }

void check_args(const AttentionArgs& a) {
  AUTOSP_CHECK(a.B >= 0 && a.Tq >= 0 && a.Tk >= 0 && a.D > 0) << "attention: bad sizes";
  AUTOSP_CHECK(a.H > 0 && a.Hkv > 0 && a.H % a.Hkv == 0)
      << "attention: H = " << a.H << " must be a multiple of Hkv = " << a.Hkv;
  AUTOSP_CHECK((a.q_seg == nullptr) == (a.k_seg == nullptr)) << "attention: q_seg and k_seg go together";
  AUTOSP_CHECK((a.q_rows == 0 || a.q_rows >= a.Tq) && (a.k_rows == 0 || a.k_rows >= a.Tk))
      << "attention: row windows of " << a.q_rows << " and " << a.k_rows << " rows cannot hold Tq = " << a.Tq
      << ", Tk = " << a.Tk;
}

// The fallback's own limits: grid dimensions (heads in y, batch in z) and int positions.
void check_fallback_args(const AttentionArgs& a) {
  check_args(a);
  AUTOSP_CHECK(a.D <= 256) << "attention (CUDA): head dim " << a.D << " > 256";
  AUTOSP_CHECK(a.B <= 65535 && a.H <= 65535) << "attention (CUDA): B = " << a.B << ", H = " << a.H;
  AUTOSP_CHECK(a.Tq < INT_MAX && a.Tk < INT_MAX) << "attention (CUDA): Tq = " << a.Tq << ", Tk = " << a.Tk;
  AUTOSP_CHECK((a.q_rows == 0 || a.q_rows == a.Tq) && (a.k_rows == 0 || a.k_rows == a.Tk))
      << "attention (CUDA): row windows are for cuDNN only (attention_*_cudnn)";
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

int padded_dim(int64_t D) { return D <= 64 ? 64 : D <= 128 ? 128 : 256; }

Params make_params(const AttentionArgs& a, int bq, int bk) {
  Params p{};
  p.q_pos = a.q_pos;
  p.k_pos = a.k_pos;
  p.q_seg = a.q_seg;
  p.k_seg = a.k_seg;
  p.Tq = a.Tq;
  p.Tk = a.Tk;
  p.H = int(a.H);
  p.Hkv = int(a.Hkv);
  p.D = int(a.D);
  p.nqt = int(ceil_div(a.Tq, bq));
  p.nkt = int(ceil_div(a.Tk, bk));
  p.scale = a.scale;
  p.causal = a.causal;
  return p;
}

// Scratch: the tile ranges of queries and keys, then `extra` bytes (the backward's delta).
// Fills p.q_rng / p.k_rng and returns the extra bytes.
void* ranges_and_scratch(AttentionContext& ctx, const AttentionArgs& a, Params& p, int bq, int bk, size_t extra,
                         cudaStream_t s) {
  const size_t q_bytes = align_up(size_t(a.B) * p.nqt * sizeof(int4));
  const size_t k_bytes = align_up(size_t(a.B) * p.nkt * sizeof(int4));
  char* base = static_cast<char*>(ctx.scratch(q_bytes + k_bytes + extra));
  int4* q_rng = reinterpret_cast<int4*>(base);
  int4* k_rng = reinterpret_cast<int4*>(base + q_bytes);
  if (p.nqt > 0) tile_ranges_kernel<<<dim3(p.nqt, unsigned(a.B)), 32, 0, s>>>(a.q_pos, a.q_seg, a.Tq, bq, q_rng);
  if (p.nkt > 0) tile_ranges_kernel<<<dim3(p.nkt, unsigned(a.B)), 32, 0, s>>>(a.k_pos, a.k_seg, a.Tk, bk, k_rng);
  CUDA_CHECK(cudaGetLastError());
  p.q_rng = q_rng;
  p.k_rng = k_rng;
  return base + q_bytes + k_bytes;
}

template <class Shared>
void launch(void (*kernel)(Params), dim3 grid, const Params& p, cudaStream_t s) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(sizeof(Shared))));
  kernel<<<grid, kThreads, sizeof(Shared), s>>>(p);
  CUDA_CHECK(cudaGetLastError());
}

template <int DP>
void forward_fallback(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k, const bf16* v,
                      bf16* o, float* lse, cudaStream_t s) {
  Params p = make_params(a, FwdTile<DP>::BQ, FwdTile<DP>::BK);
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = o;
  p.lse_out = lse;
  p.vec = a.D % 8 == 0 && aligned16(q) && aligned16(k) && aligned16(v);
  ranges_and_scratch(ctx, a, p, FwdTile<DP>::BQ, FwdTile<DP>::BK, 0, s);
  launch<FwdShared<DP>>(attention_forward_kernel<DP>, dim3(p.nqt, p.H, unsigned(a.B)), p, s);
}

template <int DP>
void backward_fallback(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k, const bf16* v,
                       const bf16* o, const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv,
                       cudaStream_t s) {
  constexpr int BQ = BwdTile<DP>::BQ, BK = BwdTile<DP>::BK;
  Params p = make_params(a, BQ, BK);
  p.q = q;
  p.k = k;
  p.v = v;
  p.dout = dout;
  p.lse = lse;
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  p.vec = a.D % 8 == 0 && aligned16(q) && aligned16(k) && aligned16(v) && aligned16(dout);
  const int64_t rows = a.B * a.Tq * a.H;
  float* delta = static_cast<float*>(ranges_and_scratch(ctx, a, p, BQ, BK, size_t(rows) * sizeof(float), s));
  if (rows > 0) {
    constexpr int kRowsPerBlock = 8;
    attention_delta_kernel<<<unsigned(ceil_div(rows, kRowsPerBlock)), 32 * kRowsPerBlock, 0, s>>>(
        o, dout, delta, rows, a.Tq, p.H, p.D);
    CUDA_CHECK(cudaGetLastError());
  }
  p.delta = delta;
  if (p.nkt > 0) launch<DkvShared<DP>>(attention_backward_dkdv_kernel<DP>, dim3(p.nkt, p.Hkv, unsigned(a.B)), p, s);
  if (p.nqt > 0) launch<DqShared<DP>>(attention_backward_dq_kernel<DP>, dim3(p.nqt, p.H, unsigned(a.B)), p, s);
}

}  // namespace

AttentionContext::AttentionContext() {
  if (const char* e = std::getenv("AUTOSP_ATTENTION")) {
    force_fallback = std::strcmp(e, "fallback") == 0;
    if (!force_fallback && std::strcmp(e, "auto") != 0 && *e != '\0')
      std::fprintf(stderr, "autosp: AUTOSP_ATTENTION=%s ignored (expected \"fallback\" or \"auto\")\n", e);
  }
}

AttentionContext::~AttentionContext() {
  const int64_t held = release_cudnn_attention(cudnn);
  cudaFree(scratch_);
  if (on_resize) on_resize(-int64_t(scratch_bytes_) - held);
}

void* AttentionContext::scratch(size_t bytes) {
  if (bytes > scratch_bytes_) {
    // Work queued earlier may still read the old buffer.
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaFree(scratch_));
    if (on_resize) on_resize(-int64_t(scratch_bytes_));
    scratch_ = nullptr;
    scratch_bytes_ = 0;
    CUDA_CHECK(cudaMalloc(&scratch_, bytes));
    scratch_bytes_ = bytes;
    if (on_resize) on_resize(int64_t(bytes));
  }
  return scratch_;
}

void attention_forward_fallback(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k,
                                const bf16* v, bf16* o, float* lse, cudaStream_t s) {
  check_fallback_args(a);
  if (a.B == 0 || a.Tq == 0) return;
  switch (padded_dim(a.D)) {
    case 64: return forward_fallback<64>(ctx, a, q, k, v, o, lse, s);
    case 128: return forward_fallback<128>(ctx, a, q, k, v, o, lse, s);
    default: return forward_fallback<256>(ctx, a, q, k, v, o, lse, s);
  }
}

void attention_backward_fallback(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k,
                                 const bf16* v, const bf16* o, const float* lse, const bf16* dout, bf16* dq,
                                 bf16* dk, bf16* dv, cudaStream_t s) {
  check_fallback_args(a);
  if (a.B == 0) return;
  switch (padded_dim(a.D)) {
    case 64: return backward_fallback<64>(ctx, a, q, k, v, o, lse, dout, dq, dk, dv, s);
    case 128: return backward_fallback<128>(ctx, a, q, k, v, o, lse, dout, dq, dk, dv, s);
    default: return backward_fallback<256>(ctx, a, q, k, v, o, lse, dout, dq, dk, dv, s);
  }
}

void attention_forward(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k, const bf16* v,
                       bf16* o, float* lse, cudaStream_t s) {
  check_args(a);
  if (!ctx.force_fallback && attention_forward_cudnn(ctx, a, q, k, v, o, lse, s)) return;
  attention_forward_fallback(ctx, a, q, k, v, o, lse, s);
}

void attention_backward(AttentionContext& ctx, const AttentionArgs& a, const bf16* q, const bf16* k, const bf16* v,
                        const bf16* o, const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv,
                        cudaStream_t s) {
  check_args(a);
  if (!ctx.force_fallback && attention_backward_cudnn(ctx, a, q, k, v, o, lse, dout, dq, dk, dv, s)) return;
  attention_backward_fallback(ctx, a, q, k, v, o, lse, dout, dq, dk, dv, s);
}

#ifndef AUTOSP_HAVE_CUDNN_FRONTEND
// Built without the cuDNN frontend headers (kernels/cuda/CMakeLists.txt says so at configure
// time): there is no cuDNN path, and every call takes the kernels above.
bool attention_cudnn_built() { return false; }
bool attention_forward_cudnn(AttentionContext&, const AttentionArgs&, const bf16*, const bf16*, const bf16*, bf16*,
                             float*, cudaStream_t) {
  return false;
}
bool attention_backward_cudnn(AttentionContext&, const AttentionArgs&, const bf16*, const bf16*, const bf16*,
                              const bf16*, const float*, const bf16*, bf16*, bf16*, bf16*, cudaStream_t) {
  return false;
}
bool attention_forward_cudnn_visiting(AttentionContext&, const AttentionArgs&, const VisitingDocuments&, const bf16*,
                                      const bf16*, const bf16*, bf16*, float*, cudaStream_t) {
  return false;
}
bool attention_backward_cudnn_visiting(AttentionContext&, const AttentionArgs&, const VisitingDocuments&,
                                       const bf16*, const bf16*, const bf16*, const bf16*, const float*, const bf16*,
                                       bf16*, bf16*, bf16*, cudaStream_t) {
  return false;
}
bool attention_cudnn_documents() { return false; }
int64_t attention_cudnn_workspace(AttentionContext&, const AttentionArgs&, bool) { return -1; }
int64_t cudnn_attention_held_bytes(const CudnnAttention*) { return 0; }
int64_t release_cudnn_attention(CudnnAttention*) { return 0; }
#endif

}  // namespace autosp::kernels::cuda
