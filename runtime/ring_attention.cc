// Ring attention (ring_attention.h) on the CPU attention kernel, which already takes explicit
// query/key positions and segment ids and Tq != Tk: each ring step is one kernel call on
// (local queries, visiting K/V block), so this file is only the schedule and the merges.
//
// What travels is one buffer per block, [k | v | idx | seg | dk | dv], so each ring step is a
// single send_recv of a contiguous byte range of it (forward sends [k..seg]). Two buffers
// alternate: the one being computed on is being sent, the other receives the next block.
#include "runtime/ring_attention.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <memory>

#include "core/check.h"
#include "kernels/cpu/attention.h"

namespace autosp::runtime {
namespace {

namespace kcpu = autosp::kernels::cpu;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void check_args(const Communicator& ring, const RingAttentionArgs& a) {
  AUTOSP_CHECK(a.B >= 0 && a.T >= 0 && a.D > 0 && a.H > 0 && a.Hkv > 0 && a.H % a.Hkv == 0)
      << "ring attention: bad sizes B=" << a.B << " T=" << a.T << " H=" << a.H << " Hkv=" << a.Hkv
      << " D=" << a.D;
  // Without global indices every rank would believe it holds tokens 0..T-1.
  AUTOSP_CHECK(a.idx != nullptr) << "ring attention needs the global index of every local token";
  AUTOSP_CHECK(ring.size() >= 1);
}

// Byte offsets of the travelling buffer. Every piece is a multiple of 4 bytes (float, int32),
// so every piece stays 4-aligned. Forward has no gradients: its buffer ends at dk.
struct Layout {
  Layout(const RingAttentionArgs& a, bool with_grads) {
    const int64_t kv = a.B * a.T * a.Hkv * a.D * int64_t(sizeof(float));
    const int64_t ids = a.B * a.T * int64_t(sizeof(int32_t));
    v = k + kv;
    idx = v + kv;
    seg = idx + ids;
    dk = seg + (a.seg ? ids : 0);
    dv = dk + kv;
    total = with_grads ? dv + kv : dk;
  }
  int64_t k = 0, v, idx, seg, dk, dv, total;
  int64_t kv_bytes() const { return dk; }  // [k | v | idx | seg]
};

// One block in flight or being computed on.
class Block {
 public:
  explicit Block(const Layout& l) : l_(l), buf_(l.total) {}
  std::byte* at(int64_t off) { return buf_.data() + off; }
  float* k() { return reinterpret_cast<float*>(at(l_.k)); }
  float* v() { return reinterpret_cast<float*>(at(l_.v)); }
  int32_t* idx() { return reinterpret_cast<int32_t*>(at(l_.idx)); }
  int32_t* seg() { return reinterpret_cast<int32_t*>(at(l_.seg)); }
  float* dk() { return reinterpret_cast<float*>(at(l_.dk)); }
  float* dv() { return reinterpret_cast<float*>(at(l_.dv)); }

  void load(const RingAttentionArgs& a, const float* k, const float* v) {
    std::memcpy(at(l_.k), k, l_.v - l_.k);
    std::memcpy(at(l_.v), v, l_.idx - l_.v);
    std::memcpy(at(l_.idx), a.idx, l_.seg - l_.idx);
    if (a.seg) std::memcpy(at(l_.seg), a.seg, l_.dk - l_.seg);
  }

 private:
  const Layout& l_;
  std::vector<std::byte> buf_;
};

struct Range {
  int32_t lo, hi;
};

Range range_of(const int32_t* x, int64_t n) {
  const auto [mn, mx] = std::minmax_element(x, x + n);
  return {*mn, *mx};
}

// True when no local query sees any key of the block, per batch row by index and segment
// bounds. The kernel would skip every tile of such a block too, but only after planning the
// mask (O(B·T)) and, in backward, row statistics and zero-filling (O(B·H·T·D)); with a
// contiguous causal layout half of all ring steps are like this.
class HiddenTest {
 public:
  explicit HiddenTest(const RingAttentionArgs& a) : a_(a) {
    for (int64_t b = 0; b < a.B; ++b) {
      q_idx_.push_back(range_of(a.idx + b * a.T, a.T));
      if (a.seg) q_seg_.push_back(range_of(a.seg + b * a.T, a.T));
    }
  }
  bool hidden(const int32_t* k_idx, const int32_t* k_seg) const {
    if (a_.T == 0) return true;
    for (int64_t b = 0; b < a_.B; ++b) {
      const bool pos_ok = !a_.causal || range_of(k_idx + b * a_.T, a_.T).lo <= q_idx_[b].hi;
      bool seg_ok = true;
      if (a_.seg) {
        const Range ks = range_of(k_seg + b * a_.T, a_.T), qs = q_seg_[b];
        seg_ok = ks.lo <= qs.hi && qs.lo <= ks.hi;
      }
      if (pos_ok && seg_ok) return false;
    }
    return true;
  }

 private:
  const RingAttentionArgs& a_;
  std::vector<Range> q_idx_, q_seg_;
};

kcpu::AttentionArgs block_args(const RingAttentionArgs& a, Block& blk) {
  kcpu::AttentionArgs r;
  r.B = a.B, r.Tq = a.T, r.Tk = a.T, r.H = a.H, r.Hkv = a.Hkv, r.D = a.D;
  r.causal = a.causal, r.scale = a.scale;
  r.q_pos = a.idx, r.k_pos = blk.idx();
  if (a.seg) r.q_seg = a.seg, r.k_seg = blk.seg();
  return r;
}

// (o, lse) := attention over the union of two disjoint key sets, given each set's normalised
// output and lse: weights e^(lse_i - lse_new) with lse_new = logaddexp(lse, lse_blk), in fp32.
// A set that no query saw (lse = -inf) contributes nothing, and never makes NaN.
void merge_block(const RingAttentionArgs& a, float* o, float* lse, const float* o_blk, const float* lse_blk) {
  const int64_t D = a.D;
#pragma omp parallel for schedule(static) if (a.B * a.T * a.H * D >= (1 << 18))
  for (int64_t bt = 0; bt < a.B * a.T; ++bt) {
    const int64_t b = bt / a.T, i = bt % a.T;
    for (int64_t h = 0; h < a.H; ++h) {
      float* l = lse + (b * a.H + h) * a.T + i;
      const float l_blk = lse_blk[(b * a.H + h) * a.T + i];
      float* orow = o + (bt * a.H + h) * D;
      const float* brow = o_blk + (bt * a.H + h) * D;
      if (l_blk == kNegInf) continue;
      if (*l == kNegInf) {
        std::copy_n(brow, D, orow);
        *l = l_blk;
        continue;
      }
      const float l_new = std::max(*l, l_blk) + std::log1p(std::exp(-std::abs(*l - l_blk)));
      const float w = std::exp(*l - l_new), w_blk = std::exp(l_blk - l_new);
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) orow[d] = w * orow[d] + w_blk * brow[d];
      *l = l_new;
    }
  }
}

void add_into(float* dst, const float* src, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

}  // namespace

void ring_attention_forward(Communicator& ring, const RingAttentionArgs& a, const float* q, const float* k,
                            const float* v, float* o, float* lse) {
  check_args(ring, a);
  const int P = ring.size(), next_rank = (ring.rank() + 1) % P, prev_rank = (ring.rank() + P - 1) % P;
  const int64_t q_elems = a.B * a.T * a.H * a.D, rows = a.B * a.H * a.T;
  const Layout layout(a, /*with_grads=*/false);
  Block bufs[2] = {Block(layout), Block(layout)};
  bufs[0].load(a, k, v);
  const HiddenTest test(a);
  std::vector<float> o_blk, lse_blk;  // a visiting block's result before its merge
  bool have_result = false;           // o, lse hold at least one block's result

  for (int s = 0; s < P; ++s) {
    Block &cur = bufs[s % 2], &nxt = bufs[(s + 1) % 2];
    // Reading cur while it is being sent is allowed: only writes must wait for the send.
    std::unique_ptr<Pending> xfer;
    if (s + 1 < P)
      xfer = ring.start_send_recv(cur.at(0), layout.kv_bytes(), next_rank, nxt.at(0), layout.kv_bytes(),
                                  prev_rank);
    if (!test.hidden(cur.idx(), cur.seg())) {
      const kcpu::AttentionArgs ka = block_args(a, cur);
      if (!have_result) {
        kcpu::attention_forward(ka, q, cur.k(), cur.v(), o, lse);
        have_result = true;
      } else {
        o_blk.resize(q_elems);
        lse_blk.resize(rows);
        kcpu::attention_forward(ka, q, cur.k(), cur.v(), o_blk.data(), lse_blk.data());
        merge_block(a, o, lse, o_blk.data(), lse_blk.data());
      }
    }
    if (xfer) xfer->wait();
  }
  // Every query sees its own key, so this is T == 0 only; kept so the header's contract (o = 0,
  // lse = -inf where nothing is seen) holds for any idx and seg.
  if (!have_result) {
    std::fill_n(o, q_elems, 0.0f);
    std::fill_n(lse, rows, kNegInf);
  }
}

// Backward schedule. The kernel's attention_backward with the merged o and lse gives the
// exact gradient contributions of one key block (P = exp(S - lse), delta = rowsum(dO ∘ O)).
// Block b_s = the block started on rank (rank - s) mod P is computed at step s. Its dk/dv
// accumulator (contributions of ranks rank-s .. rank) is complete on this rank after step s,
// and rank+1 computes that same block at step s+1; so the accumulator travels in step s+1's
// message next to the K/V block b_{s+1} (the buffer [k..seg | dk dv] is laid out for that),
// overlapping the transfer with step s+1's compute. After step P-1 the accumulator holds all P
// contributions for block rank+1, and one last hop takes it home.
void ring_attention_backward(Communicator& ring, const RingAttentionArgs& a, const float* q, const float* k,
                             const float* v, const float* o, const float* lse, const float* dout, float* dq,
                             float* dk, float* dv) {
  check_args(ring, a);
  const int P = ring.size(), next_rank = (ring.rank() + 1) % P, prev_rank = (ring.rank() + P - 1) % P;
  const int64_t q_elems = a.B * a.T * a.H * a.D, kv_elems = a.B * a.T * a.Hkv * a.D;
  const Layout layout(a, /*with_grads=*/true);
  Block bufs[2] = {Block(layout), Block(layout)};
  bufs[0].load(a, k, v);
  const HiddenTest test(a);
  std::vector<float> dq_part, dk_part(kv_elems), dv_part(kv_elems);
  bool have_dq = false;

  for (int s = 0; s < P; ++s) {
    Block &cur = bufs[s % 2], &nxt = bufs[(s + 1) % 2];
    // Step s sends cur's K/V unless the ring is done with K/V, and the accumulator finished at
    // step s-1 unless there is none yet: one contiguous byte range either way.
    const int64_t begin = s + 1 < P ? 0 : layout.dk, end = s > 0 ? layout.total : layout.kv_bytes();
    std::unique_ptr<Pending> xfer;
    if (begin < end)
      xfer = ring.start_send_recv(cur.at(begin), end - begin, next_rank, nxt.at(begin), end - begin,
                                  prev_rank);
    const bool hidden = test.hidden(cur.idx(), cur.seg());
    if (!hidden) {
      float* dq_dst = dq;
      if (have_dq) {
        dq_part.resize(q_elems);
        dq_dst = dq_part.data();
      }
      kcpu::attention_backward(block_args(a, cur), q, cur.k(), cur.v(), o, lse, dout, dq_dst, dk_part.data(),
                               dv_part.data());
      if (have_dq) add_into(dq, dq_part.data(), q_elems);
      have_dq = true;
    }
    if (xfer) xfer->wait();
    // nxt's dk/dv now hold the accumulator of block b_s from rank-1 (nothing at s == 0), and
    // go out with the next step's message.
    if (s == 0) {
      if (hidden) {
        std::fill_n(nxt.dk(), kv_elems, 0.0f);
        std::fill_n(nxt.dv(), kv_elems, 0.0f);
      } else {
        std::copy_n(dk_part.data(), kv_elems, nxt.dk());
        std::copy_n(dv_part.data(), kv_elems, nxt.dv());
      }
    } else if (!hidden) {
      add_into(nxt.dk(), dk_part.data(), kv_elems);
      add_into(nxt.dv(), dv_part.data(), kv_elems);
    }
  }

  Block* home = &bufs[P % 2];  // holds the complete accumulator of block rank+1 (rank itself if P == 1)
  if (P > 1) {
    Block& other = bufs[(P + 1) % 2];  // its last send is done, so it can receive
    ring.send_recv(home->at(layout.dk), layout.total - layout.dk, next_rank, other.at(layout.dk),
                   layout.total - layout.dk, prev_rank);
    home = &other;
  }
  std::copy_n(home->dk(), kv_elems, dk);
  std::copy_n(home->dv(), kv_elems, dv);
  if (!have_dq) std::fill_n(dq, q_elems, 0.0f);
}

std::vector<int32_t> zigzag_indices(int64_t T_total, int P, int rank) {
  AUTOSP_CHECK(P >= 1 && rank >= 0 && rank < P) << "zigzag_indices: rank " << rank << " of " << P;
  AUTOSP_CHECK(T_total % (2 * P) == 0)
      << "zigzag_indices: " << T_total << " tokens do not split into 2·" << P << " equal chunks";
  AUTOSP_CHECK(T_total <= std::numeric_limits<int32_t>::max());
  const int64_t c = T_total / (2 * P);
  std::vector<int32_t> out;
  out.reserve(2 * c);
  for (const int64_t chunk : {int64_t(rank), int64_t(2 * P - 1 - rank)})
    for (int64_t i = 0; i < c; ++i) out.push_back(static_cast<int32_t>(chunk * c + i));
  return out;
}

std::vector<int32_t> contiguous_indices(int64_t T_total, int P, int rank) {
  AUTOSP_CHECK(P >= 1 && rank >= 0 && rank < P) << "contiguous_indices: rank " << rank << " of " << P;
  AUTOSP_CHECK(T_total % P == 0) << "contiguous_indices: " << T_total << " tokens over " << P << " ranks";
  AUTOSP_CHECK(T_total <= std::numeric_limits<int32_t>::max());
  const int64_t c = T_total / P;
  std::vector<int32_t> out(c);
  for (int64_t i = 0; i < c; ++i) out[i] = static_cast<int32_t>(rank * c + i);
  return out;
}

}  // namespace autosp::runtime
