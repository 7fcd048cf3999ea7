// Flash attention forward and backward on the CPU (see attention.h for layout and masking).
//
// Work is split into (query block × key block) tiles. OpenMP threads take whole query blocks
// (forward) or key blocks / kv heads (backward); each tile's products are sgemm calls on the
// calling thread over strided views of q/k/v (no copies); softmax is online, so the only
// scratch is a few block×block and block×D buffers per thread. Tiles that the mask hides
// entirely are skipped using per-block min/max of positions and segment ids, which is exact
// for any positions (monotone or not) and makes causal attention cost half of full.
//
// Backward recomputes P = exp(S - lse) from the forward's lse, so nothing T×T is stored. It
// is race-free and deterministic for a given thread count, in one of two schedules:
//   fused: parallel over (batch, kv head). A task owns dK, dV of its kv head and dQ of every
//     query head in its GQA group, so each tile costs 5 GEMMs. Used when these tasks share
//     out evenly over the threads.
//   two passes, when there are too few (batch, kv head) pairs to keep the threads busy:
//     1. parallel over (batch, kv head, key block): dK, dV of the block, summed over the
//        group's query heads and query blocks in a fixed order;
//     2. parallel over (batch, head, query block): dQ of the block.
//     S and dP are computed in both passes: 7 tile GEMMs instead of 5.
#include "kernels/cpu/attention.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/check.h"
#include "kernels/cpu/vexp.h"

namespace autosp::kernels::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();

// Tile sizes. Every tile product is Bq·Bk·D multiply-adds through sgemm, called from inside
// our OpenMP loop. OpenBLAS runs a GEMM on the calling thread when M·N·K <= 65536·4 (its SMP
// threshold); above that it hands the call to its own thread pool, which, entered from every
// OpenMP thread at once, serialised the callers and measured ~4x slower on a 2-core host.
// So tiles stay under the threshold, unless OpenBLAS is single-threaded anyway, where
// 128×128 tiles amortise sgemm's per-call cost better (+15% measured at D = 64).
constexpr int64_t kBlasSingleThreadMnk = 65536 * 4;

// Below this many score multiply-adds (B·H·Tq·Tk·D) a call runs on one thread: waking a team
// costs microseconds, and on an oversubscribed host (spinning OpenBLAS and OpenMP threads)
// milliseconds, far more than a tiny problem's work.
constexpr double kParallelMinWork = 1 << 20;

bool worth_threads(const AttentionArgs& a) {
  return double(a.B) * a.H * double(a.Tq) * double(a.Tk) * a.D >= kParallelMinWork;
}

struct TileSizes {
  int64_t bq, bk;
};

TileSizes tile_sizes(int64_t D) {
  if (openblas_get_num_threads() == 1) return {128, 128};
  const int64_t bk = 64, fit = kBlasSingleThreadMnk / (bk * std::max<int64_t>(D, 1));
  return {std::clamp<int64_t>(fit / 16 * 16, 16, 64), bk};  // D > 256 exceeds it: correct, slower
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

enum class Tile { kSkip, kFull, kPartial };

struct Range {
  int32_t lo, hi;
};

// Positions and segment ids of every batch row, with defaults filled in, and their min/max
// per block: enough to classify a tile as hidden / fully visible / mixed in O(1).
class MaskPlan {
 public:
  MaskPlan(const AttentionArgs& a, int64_t bq, int64_t bk)
      : a_(a), nqb_(ceil_div(a.Tq, bq)), nkb_(ceil_div(a.Tk, bk)) {
    const int64_t tmax = std::max(a.Tq, a.Tk);
    iota_.resize(tmax);
    for (int64_t i = 0; i < tmax; ++i) iota_[i] = static_cast<int32_t>(i);
    zeros_.assign(tmax, 0);  // "one document": every segment id equal
    qpos_rng_ = ranges(&MaskPlan::qpos, a.Tq, bq, nqb_);
    qseg_rng_ = ranges(&MaskPlan::qseg, a.Tq, bq, nqb_);
    kpos_rng_ = ranges(&MaskPlan::kpos, a.Tk, bk, nkb_);
    kseg_rng_ = ranges(&MaskPlan::kseg, a.Tk, bk, nkb_);
  }

  // Never null, so the masking loop needs no branches on which arrays were given.
  const int32_t* qpos(int64_t b) const { return a_.q_pos ? a_.q_pos + b * a_.Tq : iota_.data(); }
  const int32_t* kpos(int64_t b) const { return a_.k_pos ? a_.k_pos + b * a_.Tk : iota_.data(); }
  const int32_t* qseg(int64_t b) const { return a_.q_seg ? a_.q_seg + b * a_.Tq : zeros_.data(); }
  const int32_t* kseg(int64_t b) const { return a_.k_seg ? a_.k_seg + b * a_.Tk : zeros_.data(); }

  int64_t num_query_blocks() const { return nqb_; }
  int64_t num_key_blocks() const { return nkb_; }

  Tile tile(int64_t b, int64_t qb, int64_t kb) const {
    const Range qp = qpos_rng_[b * nqb_ + qb], qs = qseg_rng_[b * nqb_ + qb];
    const Range kp = kpos_rng_[b * nkb_ + kb], ks = kseg_rng_[b * nkb_ + kb];
    if (a_.causal && kp.lo > qp.hi) return Tile::kSkip;  // every key is after every query
    if (ks.hi < qs.lo || ks.lo > qs.hi) return Tile::kSkip;  // no segment id in common
    const bool pos_visible = !a_.causal || kp.hi <= qp.lo;
    const bool seg_visible = qs.lo == qs.hi && ks.lo == ks.hi && qs.lo == ks.lo;
    return pos_visible && seg_visible ? Tile::kFull : Tile::kPartial;
  }

  // s[r * lds + c] = -inf where key j0 + c is hidden from query i0 + r.
  void apply(int64_t b, int64_t i0, int64_t nq, int64_t j0, int64_t nk, float* s, int64_t lds) const {
    const int32_t *qp = qpos(b) + i0, *qs = qseg(b) + i0, *kp = kpos(b) + j0, *ks = kseg(b) + j0;
    const bool causal = a_.causal;
    for (int64_t r = 0; r < nq; ++r) {
      float* sr = s + r * lds;
      const int32_t qpr = qp[r], qsr = qs[r];
#pragma omp simd
      for (int64_t c = 0; c < nk; ++c) {
        const bool hidden = (causal && kp[c] > qpr) || ks[c] != qsr;
        sr[c] = hidden ? kNegInf : sr[c];
      }
    }
  }

 private:
  using Getter = const int32_t* (MaskPlan::*)(int64_t) const;
  std::vector<Range> ranges(Getter get, int64_t T, int64_t bs, int64_t nb) const {
    std::vector<Range> out(a_.B * nb);
    for (int64_t b = 0; b < a_.B; ++b) {
      const int32_t* x = (this->*get)(b);
      for (int64_t blk = 0; blk < nb; ++blk) {
        const int64_t lo = blk * bs, hi = std::min(T, lo + bs);
        const auto [mn, mx] = std::minmax_element(x + lo, x + hi);
        out[b * nb + blk] = {*mn, *mx};
      }
    }
    return out;
  }

  const AttentionArgs& a_;
  int64_t nqb_, nkb_;
  std::vector<int32_t> iota_, zeros_;
  std::vector<Range> qpos_rng_, qseg_rng_, kpos_rng_, kseg_rng_;
};

void check_args(const AttentionArgs& a) {
  AUTOSP_CHECK(a.B >= 0 && a.Tq >= 0 && a.Tk >= 0 && a.D > 0) << "attention: bad sizes";
  AUTOSP_CHECK(a.H > 0 && a.Hkv > 0 && a.H % a.Hkv == 0)
      << "attention: H = " << a.H << " must be a multiple of Hkv = " << a.Hkv;
  AUTOSP_CHECK((a.q_seg == nullptr) == (a.k_seg == nullptr)) << "attention: q_seg and k_seg go together";
}

// Shapes and strides shared by every tile; views into q/k/v are rows of H·D or Hkv·D floats.
struct Geometry {
  explicit Geometry(const AttentionArgs& a) : Geometry(a, tile_sizes(a.D)) {}
  Geometry(const AttentionArgs& a, TileSizes t)
      : a(a), bq(t.bq), bk(t.bk), ldq(a.H * a.D), ldk(a.Hkv * a.D), group(a.H / a.Hkv) {}
  const AttentionArgs& a;
  int64_t bq, bk, ldq, ldk, group;
  int64_t q_off(int64_t b, int64_t i, int64_t h) const { return (b * a.Tq + i) * ldq + h * a.D; }
  int64_t k_off(int64_t b, int64_t j, int64_t kvh) const { return (b * a.Tk + j) * ldk + kvh * a.D; }
  int64_t row_off(int64_t b, int64_t h, int64_t i) const { return (b * a.H + h) * a.Tq + i; }  // lse
};

// s (nq × nk, row stride bk) = scale · Q_blk · K_blkᵀ, with hidden entries set to -inf.
void scores(const Geometry& g, const MaskPlan& mask, Tile tile, int64_t b, int64_t i0, int64_t nq,
            int64_t j0, int64_t nk, const float* qp, const float* kp, float* s) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, g.a.D, g.a.scale, qp, g.ldq, kp, g.ldk,
              0.0f, s, g.bk);
  if (tile == Tile::kPartial) mask.apply(b, i0, nq, j0, nk, s, g.bk);
}

// ---------------------------------------------------------------------------------------
// forward

struct ForwardScratch {
  explicit ForwardScratch(const Geometry& g) : s(g.bq * g.bk), acc(g.bq * g.a.D), m(g.bq), l(g.bq) {}
  std::vector<float> s, acc, m, l;  // scores/probs, unnormalised O, running max and sum
};

// One online-softmax step for row r: fold the tile's scores sr[0, nk) into (m, l, acc_row)
// and leave exp(s - m_new) in sr for the P·V product.
inline void online_softmax_row(float* sr, int64_t nk, float& m, float& l, float* acc_row, int64_t D) {
  const float mx = row_max(sr, nk, m);
  if (mx == kNegInf) {  // no visible key yet: this row adds nothing
    std::fill(sr, sr + nk, 0.0f);
    return;
  }
  const float alpha = vexp(m - mx);  // 0 when m was -inf; acc and l are 0 then anyway
  l = l * alpha + exp_shift_sum(sr, nk, mx);
  m = mx;
  if (alpha != 1.0f) {
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) acc_row[d] *= alpha;
  }
}

void forward_query_block(const Geometry& g, const MaskPlan& mask, int64_t b, int64_t h, int64_t qb,
                         const float* q, const float* k, const float* v, float* o, float* lse,
                         ForwardScratch& w) {
  const AttentionArgs& a = g.a;
  const int64_t D = a.D, i0 = qb * g.bq, nq = std::min(g.bq, a.Tq - i0), kvh = h / g.group;
  const float* qp = q + g.q_off(b, i0, h);
  std::fill(w.m.begin(), w.m.end(), kNegInf);
  std::fill(w.l.begin(), w.l.end(), 0.0f);
  std::fill(w.acc.begin(), w.acc.begin() + nq * D, 0.0f);

  for (int64_t kb = 0; kb < mask.num_key_blocks(); ++kb) {
    const Tile tile = mask.tile(b, qb, kb);
    if (tile == Tile::kSkip) continue;
    const int64_t j0 = kb * g.bk, nk = std::min(g.bk, a.Tk - j0);
    scores(g, mask, tile, b, i0, nq, j0, nk, qp, k + g.k_off(b, j0, kvh), w.s.data());
    for (int64_t r = 0; r < nq; ++r)
      online_softmax_row(w.s.data() + r * g.bk, nk, w.m[r], w.l[r], w.acc.data() + r * D, D);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, D, nk, 1.0f, w.s.data(), g.bk,
                v + g.k_off(b, j0, kvh), g.ldk, 1.0f, w.acc.data(), D);
  }

  for (int64_t r = 0; r < nq; ++r) {
    float* orow = o + g.q_off(b, i0 + r, h);
    const float* arow = w.acc.data() + r * D;
    // l >= 1 whenever some key was visible (the max term is exp(0)), so l == 0 means none was.
    const float inv = w.l[r] > 0.0f ? 1.0f / w.l[r] : 0.0f;
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) orow[d] = arow[d] * inv;
    lse[g.row_off(b, h, i0 + r)] = w.l[r] > 0.0f ? w.m[r] + std::log(w.l[r]) : kNegInf;
  }
}

// ---------------------------------------------------------------------------------------
// backward

struct BackwardScratch {
  explicit BackwardScratch(const Geometry& g)
      : p(g.bq * g.bk), ds(g.bq * g.bk), acc1(std::max(g.bq, g.bk) * g.a.D), acc2(g.bk * g.a.D) {}
  std::vector<float> p, ds, acc1, acc2;
};

// Per query row of the whole problem: the lse to subtract (with -inf replaced by +inf, so a
// row that saw no key gets P = exp(-inf) = 0 rather than exp(-inf + inf) = NaN) and
// delta = rowsum(dO ∘ O), the softmax-backward correction term.
struct RowStats {
  std::vector<float> lse, delta;  // [B, H, Tq]
};

RowStats row_stats(const Geometry& g, const float* o, const float* lse, const float* dout) {
  const AttentionArgs& a = g.a;
  const int64_t rows = a.B * a.H * a.Tq;
  RowStats st{std::vector<float>(rows), std::vector<float>(rows)};
#pragma omp parallel for schedule(static) if (worth_threads(a))
  for (int64_t bt = 0; bt < a.B * a.Tq; ++bt) {
    const int64_t b = bt / a.Tq, i = bt % a.Tq;
    for (int64_t h = 0; h < a.H; ++h) {
      const float *orow = o + g.q_off(b, i, h), *drow = dout + g.q_off(b, i, h);
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t d = 0; d < a.D; ++d) dot += orow[d] * drow[d];
      const int64_t at = g.row_off(b, h, i);
      st.delta[at] = dot;
      st.lse[at] = lse[at] == kNegInf ? kPosInf : lse[at];
    }
  }
  return st;
}

// For one tile: w.p = P = exp(S - lse) and w.ds = P ∘ (dO·Vᵀ - delta) (dS without the scale,
// which the callers fold into the GEMM that consumes it).
void probs_and_dscores(const Geometry& g, const MaskPlan& mask, const RowStats& st, Tile tile, int64_t b,
                       int64_t h, int64_t i0, int64_t nq, int64_t j0, int64_t nk, const float* qp,
                       const float* kp, const float* vp, const float* dop, BackwardScratch& w) {
  scores(g, mask, tile, b, i0, nq, j0, nk, qp, kp, w.p.data());
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, g.a.D, 1.0f, dop, g.ldq, vp, g.ldk, 0.0f,
              w.ds.data(), g.bk);
  const float* lse = st.lse.data() + g.row_off(b, h, i0);
  const float* delta = st.delta.data() + g.row_off(b, h, i0);
  for (int64_t r = 0; r < nq; ++r) {
    float *pr = w.p.data() + r * g.bk, *dsr = w.ds.data() + r * g.bk;
    const float lr = lse[r], dr = delta[r];
#pragma omp simd
    for (int64_t c = 0; c < nk; ++c) {
      pr[c] = vexp(pr[c] - lr);
      dsr[c] = pr[c] * (dsr[c] - dr);
    }
  }
}

// dK and dV of key block kb of kv head kvh (pass 1). With dq non-null (fused schedule) also
// adds this key block's share of dQ, for every head of the group, into dq.
void backward_key_block(const Geometry& g, const MaskPlan& mask, const RowStats& st, int64_t b,
                        int64_t kvh, int64_t kb, const float* q, const float* k, const float* v,
                        const float* dout, float* dq, float* dk, float* dv, BackwardScratch& w) {
  const AttentionArgs& a = g.a;
  const int64_t D = a.D, j0 = kb * g.bk, nk = std::min(g.bk, a.Tk - j0);
  const float *kp = k + g.k_off(b, j0, kvh), *vp = v + g.k_off(b, j0, kvh);
  float *dk_acc = w.acc1.data(), *dv_acc = w.acc2.data();
  std::fill(dk_acc, dk_acc + nk * D, 0.0f);
  std::fill(dv_acc, dv_acc + nk * D, 0.0f);

  for (int64_t h = kvh * g.group; h < (kvh + 1) * g.group; ++h) {
    for (int64_t qb = 0; qb < mask.num_query_blocks(); ++qb) {
      const Tile tile = mask.tile(b, qb, kb);
      if (tile == Tile::kSkip) continue;
      const int64_t i0 = qb * g.bq, nq = std::min(g.bq, a.Tq - i0);
      const float *qp = q + g.q_off(b, i0, h), *dop = dout + g.q_off(b, i0, h);
      probs_and_dscores(g, mask, st, tile, b, h, i0, nq, j0, nk, qp, kp, vp, dop, w);
      // dV += Pᵀ · dO ;  dK += scale · dSᵀ · Q
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, nq, 1.0f, w.p.data(), g.bk, dop, g.ldq,
                  1.0f, dv_acc, D);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, nq, a.scale, w.ds.data(), g.bk, qp, g.ldq,
                  1.0f, dk_acc, D);
      if (dq) {  // dQ += scale · dS · K, straight into the strided rows this task owns
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, D, nk, a.scale, w.ds.data(), g.bk, kp,
                    g.ldk, 1.0f, dq + g.q_off(b, i0, h), g.ldq);
      }
    }
  }
  for (int64_t c = 0; c < nk; ++c) {
    std::copy_n(dk_acc + c * D, D, dk + g.k_off(b, j0 + c, kvh));
    std::copy_n(dv_acc + c * D, D, dv + g.k_off(b, j0 + c, kvh));
  }
}

// Pass 2: dQ of query block qb of head h.
void backward_query_block(const Geometry& g, const MaskPlan& mask, const RowStats& st, int64_t b, int64_t h,
                          int64_t qb, const float* q, const float* k, const float* v, const float* dout,
                          float* dq, BackwardScratch& w) {
  const AttentionArgs& a = g.a;
  const int64_t D = a.D, i0 = qb * g.bq, nq = std::min(g.bq, a.Tq - i0), kvh = h / g.group;
  const float *qp = q + g.q_off(b, i0, h), *dop = dout + g.q_off(b, i0, h);
  float* dq_acc = w.acc1.data();
  std::fill(dq_acc, dq_acc + nq * D, 0.0f);

  for (int64_t kb = 0; kb < mask.num_key_blocks(); ++kb) {
    const Tile tile = mask.tile(b, qb, kb);
    if (tile == Tile::kSkip) continue;
    const int64_t j0 = kb * g.bk, nk = std::min(g.bk, a.Tk - j0);
    const float* kp = k + g.k_off(b, j0, kvh);
    probs_and_dscores(g, mask, st, tile, b, h, i0, nq, j0, nk, qp, kp, v + g.k_off(b, j0, kvh), dop, w);
    // dQ += scale · dS · K
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, D, nk, a.scale, w.ds.data(), g.bk, kp, g.ldk,
                1.0f, dq_acc, D);
  }
  for (int64_t r = 0; r < nq; ++r) std::copy_n(dq_acc + r * D, D, dq + g.q_off(b, i0 + r, h));
}

}  // namespace

void attention_forward(const AttentionArgs& a, const float* q, const float* k, const float* v, float* o,
                       float* lse) {
  check_args(a);
  const Geometry g(a);
  const MaskPlan mask(a, g.bq, g.bk);
  const int64_t nqb = mask.num_query_blocks(), tasks = a.B * a.H * nqb;
#pragma omp parallel if (worth_threads(a))
  {
    ForwardScratch w(g);
    // Dynamic: causal tiles differ in cost. Each task owns its output rows, so the schedule
    // cannot change results.
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t bh = t / nqb, qb = nqb - 1 - t % nqb;  // late (costly, if causal) blocks first
      forward_query_block(g, mask, bh / a.H, bh % a.H, qb, q, k, v, o, lse, w);
    }
  }
}

void attention_backward(const AttentionArgs& a, const float* q, const float* k, const float* v,
                        const float* o, const float* lse, const float* dout, float* dq, float* dk,
                        float* dv) {
  check_args(a);
  const Geometry g(a);
  const MaskPlan mask(a, g.bq, g.bk);
  const RowStats st = row_stats(g, o, lse, dout);
  const int64_t nqb = mask.num_query_blocks(), nkb = mask.num_key_blocks(), kv_heads = a.B * a.Hkv;
  const bool threads = worth_threads(a);
  const int64_t nt = threads ? omp_get_max_threads() : 1;
  if (kv_heads % nt == 0 || kv_heads >= 4 * nt) {
#pragma omp parallel if (threads)
    {
      BackwardScratch w(g);
#pragma omp for schedule(dynamic)
      for (int64_t bh = 0; bh < kv_heads; ++bh) {
        const int64_t b = bh / a.Hkv, kvh = bh % a.Hkv;
        for (int64_t i = 0; i < a.Tq; ++i)  // dq of this group is accumulated over key blocks
          std::fill_n(dq + g.q_off(b, i, kvh * g.group), g.group * a.D, 0.0f);
        for (int64_t kb = 0; kb < nkb; ++kb)
          backward_key_block(g, mask, st, b, kvh, kb, q, k, v, dout, dq, dk, dv, w);
      }
    }
    return;
  }
#pragma omp parallel if (threads)
  {
    BackwardScratch w(g);
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < kv_heads * nkb; ++t) {
      const int64_t bh = t / nkb, kb = t % nkb;  // early (costly, if causal) key blocks first
      backward_key_block(g, mask, st, bh / a.Hkv, bh % a.Hkv, kb, q, k, v, dout, nullptr, dk, dv, w);
    }
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < a.B * a.H * nqb; ++t) {
      const int64_t bh = t / nqb, qb = nqb - 1 - t % nqb;
      backward_query_block(g, mask, st, bh / a.H, bh % a.H, qb, q, k, v, dout, dq, w);
    }
  }
}

}  // namespace autosp::kernels::cpu
