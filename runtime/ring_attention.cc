// Ring attention (ring_attention.h) on the CPU attention kernel, which already takes explicit
// query/key positions and segment ids and Tq != Tk: each ring step is one kernel call on
// (local queries, visiting K/V block), so this file is only the schedule and the merges.
//
// What travels is one buffer per block, [k | v | idx | seg | dk | dv], so each ring step is a
// single send_recv of a contiguous byte range of it (forward sends [k..seg]). Two buffers
// alternate: the one being computed on is being sent, the other receives the next block.
// The schedule is written against RingOps (ring_attention.h); CpuRingOps below is the CPU's.
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

// The CPU holds idx, so the zigzag claim (ring_attention.h) is checked here: a compiler bug
// that claimed it for another layout would make a device's pieces skip visible keys.
void check_zigzag(const Communicator& ring, const RingAttentionArgs& a) {
  if (!a.zigzag) return;
  const std::vector<int32_t> want = zigzag_indices(a.T * ring.size(), ring.size(), ring.rank());
  for (int64_t b = 0; b < a.B; ++b)
    AUTOSP_CHECK(std::equal(want.begin(), want.end(), a.idx + b * a.T))
        << "ring attention: batch row " << b << "'s token indices on ring rank " << ring.rank() << " of "
        << ring.size() << " are not the zigzag layout the op claims";
}

void check_args(const Communicator& ring, const RingAttentionArgs& a) {
  AUTOSP_CHECK(a.B >= 0 && a.T >= 0 && a.D > 0 && a.H > 0 && a.Hkv > 0 && a.H % a.Hkv == 0)
      << "ring attention: bad sizes B=" << a.B << " T=" << a.T << " H=" << a.H << " Hkv=" << a.Hkv
      << " D=" << a.D;
  // Without global indices every rank would believe it holds tokens 0..T-1.
  AUTOSP_CHECK(a.idx != nullptr) << "ring attention needs the global index of every local token";
  AUTOSP_CHECK(ring.size() >= 1);
}

// Bytes of one dk or dv accumulator (unpadded).
int64_t layout_acc_bytes(const RingAttentionArgs& a, const RingOps& ops) {
  return a.B * a.T * a.Hkv * a.D * int64_t(ops.acc_elem_bytes());
}

// Byte offsets of the travelling buffer. Every piece starts 16-aligned (padding where a bf16
// piece has an odd length). Forward has no gradients: its buffer ends at dk.
struct Layout {
  Layout(const RingAttentionArgs& a, const RingOps& ops, bool with_grads)
      : Layout(a, ops.kv_elem_bytes(), ops.acc_elem_bytes(), with_grads) {}
  Layout(const RingAttentionArgs& a, size_t kv_elem_bytes, size_t acc_elem_bytes, bool with_grads) {
    const int64_t elems = a.B * a.T * a.Hkv * a.D;
    const int64_t kv = pad(elems * int64_t(kv_elem_bytes)), acc = pad(elems * int64_t(acc_elem_bytes));
    const int64_t ids = pad(a.B * a.T * int64_t(sizeof(int32_t)));
    v = k + kv;
    idx = v + kv;
    seg = idx + ids;
    dk = seg + (a.seg ? ids : 0);
    dv = dk + acc;
    total = with_grads ? dv + acc : dk;
  }
  static int64_t pad(int64_t bytes) { return (bytes + 15) / 16 * 16; }
  int64_t k = 0, v, idx, seg, dk, dv, total;
  int64_t kv_bytes() const { return dk; }  // [k | v | idx | seg]
};

RingBlock block_at(std::byte* buf, const Layout& l, const RingAttentionArgs& a, bool with_grads, int origin) {
  RingBlock b;
  b.origin = origin;
  b.k = buf + l.k;
  b.v = buf + l.v;
  b.idx = reinterpret_cast<int32_t*>(buf + l.idx);
  if (a.seg) b.seg = reinterpret_cast<int32_t*>(buf + l.seg);
  if (with_grads) b.dk = buf + l.dk, b.dv = buf + l.dv;
  return b;
}

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

// The CPU's block operations: fp32 everywhere, the result and dq accumulated in the outputs.
class CpuRingOps final : public RingOps {
 public:
  CpuRingOps(const RingAttentionArgs& a, const float* q, const float* k, const float* v)
      : a_(a), q_(q), k_(k), v_(v), test_(a) {}
  void set_forward(float* o, float* lse) { o_ = o, lse_ = lse; }
  void set_backward(const float* o, const float* lse, const float* dout, float* dq, float* dk, float* dv) {
    o_in_ = o, lse_in_ = lse, dout_ = dout, dq_ = dq, dk_ = dk, dv_ = dv;
  }

  size_t kv_elem_bytes() const override { return sizeof(float); }
  size_t acc_elem_bytes() const override { return sizeof(float); }
  std::byte* block_buffer(int which, size_t bytes) override {
    bufs_[which].resize((bytes + 15) / 16);
    return reinterpret_cast<std::byte*>(bufs_[which].data());
  }
  void load(const RingBlock& dst) override {
    const int64_t kv = kv_elems(), ids = a_.B * a_.T;
    std::copy_n(k_, kv, static_cast<float*>(dst.k));
    std::copy_n(v_, kv, static_cast<float*>(dst.v));
    std::copy_n(a_.idx, ids, dst.idx);
    if (a_.seg) std::copy_n(a_.seg, ids, dst.seg);
  }
  void zero(void* dst, size_t bytes) override { std::memset(dst, 0, bytes); }
  bool hidden(const RingBlock& blk) override { return test_.hidden(blk.idx, blk.seg); }

  void attend(const RingBlock& blk, bool first) override {
    const kcpu::AttentionArgs ka = block_args(blk);
    if (first) {
      kcpu::attention_forward(ka, q_, F(blk.k), F(blk.v), o_, lse_);
      return;
    }
    o_blk_.resize(q_elems());
    lse_blk_.resize(a_.B * a_.H * a_.T);
    kcpu::attention_forward(ka, q_, F(blk.k), F(blk.v), o_blk_.data(), lse_blk_.data());
    merge_block(a_, o_, lse_, o_blk_.data(), lse_blk_.data());
  }
  // Every query sees its own key, so this is T == 0 only; kept so the header's contract (o =
  // 0, lse = -inf where nothing is seen) holds for any idx and seg.
  void finish_forward(bool have_result) override {
    if (have_result) return;
    std::fill_n(o_, q_elems(), 0.0f);
    std::fill_n(lse_, a_.B * a_.H * a_.T, kNegInf);
  }

  void attend_backward(const RingBlock& blk, bool first) override {
    dk_part_.resize(kv_elems());
    dv_part_.resize(kv_elems());
    float* dq_dst = dq_;
    if (!first) {
      dq_part_.resize(q_elems());
      dq_dst = dq_part_.data();
    }
    kcpu::attention_backward(block_args(blk), q_, F(blk.k), F(blk.v), o_in_, lse_in_, dout_, dq_dst,
                             dk_part_.data(), dv_part_.data());
    if (!first) add_into(dq_, dq_part_.data(), q_elems());
  }
  void keep_grads(void* acc_dk, void* acc_dv, bool first) override {
    if (first) {
      std::copy_n(dk_part_.data(), kv_elems(), static_cast<float*>(acc_dk));
      std::copy_n(dv_part_.data(), kv_elems(), static_cast<float*>(acc_dv));
    } else {
      add_into(static_cast<float*>(acc_dk), dk_part_.data(), kv_elems());
      add_into(static_cast<float*>(acc_dv), dv_part_.data(), kv_elems());
    }
  }
  void finish_backward(const void* acc_dk, const void* acc_dv, bool have_dq) override {
    std::copy_n(static_cast<const float*>(acc_dk), kv_elems(), dk_);
    std::copy_n(static_cast<const float*>(acc_dv), kv_elems(), dv_);
    if (!have_dq) std::fill_n(dq_, q_elems(), 0.0f);
  }

 private:
  static const float* F(const void* p) { return static_cast<const float*>(p); }
  int64_t q_elems() const { return a_.B * a_.T * a_.H * a_.D; }
  int64_t kv_elems() const { return a_.B * a_.T * a_.Hkv * a_.D; }
  kcpu::AttentionArgs block_args(const RingBlock& blk) const {
    return block_attention_args<kcpu::AttentionArgs>(a_, blk);
  }

  const RingAttentionArgs& a_;
  const float *q_, *k_, *v_;
  float *o_ = nullptr, *lse_ = nullptr;
  const float *o_in_ = nullptr, *lse_in_ = nullptr, *dout_ = nullptr;
  float *dq_ = nullptr, *dk_ = nullptr, *dv_ = nullptr;
  HiddenTest test_;
  // 16-byte units keep the travelling buffers aligned for any piece.
  struct alignas(16) Unit {
    std::byte b[16];
  };
  std::vector<Unit> bufs_[2];
  std::vector<float> o_blk_, lse_blk_;             // a visiting block's result before its merge
  std::vector<float> dq_part_, dk_part_, dv_part_;  // a visiting block's gradient contributions
};

}  // namespace

void ring_attention_forward(Communicator& ring, const RingAttentionArgs& a, RingOps& ops) {
  check_args(ring, a);
  const int P = ring.size(), next_rank = (ring.rank() + 1) % P, prev_rank = (ring.rank() + P - 1) % P;
  const Layout layout(a, ops, /*with_grads=*/false);
  std::byte* bufs[2] = {ops.block_buffer(0, size_t(layout.total)), ops.block_buffer(1, size_t(layout.total))};
  const int rank = ring.rank();
  ops.load(block_at(bufs[0], layout, a, false, rank));
  bool have_result = false;  // the running result holds at least one block's

  for (int s = 0; s < P; ++s) {
    std::byte *cur = bufs[s % 2], *nxt = bufs[(s + 1) % 2];
    const RingBlock blk = block_at(cur, layout, a, false, (rank - s + P) % P);
    // Reading cur while it is being sent is allowed: only writes must wait for the send.
    std::unique_ptr<Pending> xfer;
    if (s + 1 < P) {
      ops.before_exchange();
      xfer = ring.start_send_recv(cur, layout.kv_bytes(), next_rank, nxt, layout.kv_bytes(), prev_rank);
    }
    if (!ops.hidden(blk)) {
      ops.attend(blk, /*first=*/!have_result);
      have_result = true;
    }
    if (xfer) {
      xfer->wait();
      ops.after_exchange();
    }
  }
  ops.finish_forward(have_result);
}

std::unique_ptr<RingOps> cpu_ring_forward_ops(const RingAttentionArgs& a, const float* q, const float* k,
                                              const float* v, float* o, float* lse) {
  auto ops = std::make_unique<CpuRingOps>(a, q, k, v);
  ops->set_forward(o, lse);
  return ops;
}

void ring_attention_forward(Communicator& ring, const RingAttentionArgs& a, const float* q, const float* k,
                            const float* v, float* o, float* lse) {
  check_args(ring, a);
  check_zigzag(ring, a);
  ring_attention_forward(ring, a, *cpu_ring_forward_ops(a, q, k, v, o, lse));
}

// Backward schedule. The kernel's attention_backward with the merged o and lse gives the
// exact gradient contributions of one key block (P = exp(S - lse), delta = rowsum(dO ∘ O)).
// Block b_s = the block started on rank (rank - s) mod P is computed at step s. Its dk/dv
// accumulator (contributions of ranks rank-s .. rank) is complete on this rank after step s,
// and rank+1 computes that same block at step s+1; so the accumulator travels in step s+1's
// message next to the K/V block b_{s+1} (the buffer [k..seg | dk dv] is laid out for that),
// overlapping the transfer with step s+1's compute. After step P-1 the accumulator holds all P
// contributions for block rank+1, and one last hop takes it home.
void ring_attention_backward(Communicator& ring, const RingAttentionArgs& a, RingOps& ops) {
  check_args(ring, a);
  const int P = ring.size(), next_rank = (ring.rank() + 1) % P, prev_rank = (ring.rank() + P - 1) % P;
  const int64_t acc_bytes = layout_acc_bytes(a, ops);
  const Layout layout(a, ops, /*with_grads=*/true);
  std::byte* bufs[2] = {ops.block_buffer(0, size_t(layout.total)), ops.block_buffer(1, size_t(layout.total))};
  const int rank = ring.rank();
  ops.load(block_at(bufs[0], layout, a, true, rank));
  bool have_dq = false;

  for (int s = 0; s < P; ++s) {
    std::byte *cur = bufs[s % 2], *nxt = bufs[(s + 1) % 2];
    const RingBlock blk = block_at(cur, layout, a, true, (rank - s + P) % P);
    const RingBlock next = block_at(nxt, layout, a, true, (rank - s - 1 + 2 * P) % P);
    // Step s sends cur's K/V unless the ring is done with K/V, and the accumulator finished at
    // step s-1 unless there is none yet: one contiguous byte range either way.
    const int64_t begin = s + 1 < P ? 0 : layout.dk, end = s > 0 ? layout.total : layout.kv_bytes();
    std::unique_ptr<Pending> xfer;
    if (begin < end) {
      ops.before_exchange();
      xfer = ring.start_send_recv(cur + begin, end - begin, next_rank, nxt + begin, end - begin, prev_rank);
    }
    const bool hidden = ops.hidden(blk);
    if (!hidden) {
      ops.attend_backward(blk, /*first=*/!have_dq);
      have_dq = true;
    }
    if (xfer) {
      xfer->wait();
      ops.after_exchange();
    }
    // nxt's dk/dv now hold the accumulator of block b_s from rank-1 (nothing at s == 0), and
    // go out with the next step's message.
    if (s == 0) {
      if (hidden) {
        ops.zero(next.dk, size_t(acc_bytes));
        ops.zero(next.dv, size_t(acc_bytes));
      } else {
        ops.keep_grads(next.dk, next.dv, /*first=*/true);
      }
    } else if (!hidden) {
      ops.keep_grads(next.dk, next.dv, /*first=*/false);
    }
  }

  std::byte* home = bufs[P % 2];  // holds the complete accumulator of block rank+1 (rank itself if P == 1)
  if (P > 1) {
    std::byte* other = bufs[(P + 1) % 2];  // its last send is done, so it can receive
    ops.before_exchange();
    ring.send_recv(home + layout.dk, layout.total - layout.dk, next_rank, other + layout.dk, layout.total - layout.dk,
                   prev_rank);
    ops.after_exchange();
    home = other;
  }
  const RingBlock mine = block_at(home, layout, a, true, rank);
  ops.finish_backward(mine.dk, mine.dv, have_dq);
}

std::unique_ptr<RingOps> cpu_ring_backward_ops(const RingAttentionArgs& a, const float* q, const float* k,
                                               const float* v, const float* o, const float* lse, const float* dout,
                                               float* dq, float* dk, float* dv) {
  auto ops = std::make_unique<CpuRingOps>(a, q, k, v);
  ops->set_backward(o, lse, dout, dq, dk, dv);
  return ops;
}

void ring_attention_backward(Communicator& ring, const RingAttentionArgs& a, const float* q, const float* k,
                             const float* v, const float* o, const float* lse, const float* dout, float* dq,
                             float* dk, float* dv) {
  check_args(ring, a);
  check_zigzag(ring, a);
  ring_attention_backward(ring, a, *cpu_ring_backward_ops(a, q, k, v, o, lse, dout, dq, dk, dv));
}

int64_t ring_block_bytes(const RingAttentionArgs& a, size_t kv_elem_bytes, size_t acc_elem_bytes, bool with_grads) {
  return Layout(a, kv_elem_bytes, acc_elem_bytes, with_grads).total;
}

int64_t ring_buffer_bytes(const RingAttentionArgs& a, bool cuda) {
  const int64_t qn = a.B * a.T * a.H * a.D, kvn = a.B * a.T * a.Hkv * a.D, rows = a.B * a.H * a.T;
  // CPU: a visiting block's o and lse (forward) or its dq, dk, dv parts (backward), in f32.
  if (!cuda) return 2 * ring_block_bytes(a, 4, 4, true) + 4 * std::max(qn + rows, qn + 2 * kvn);
  // CUDA: forward o_acc (f32), o_blk (bf16), lse_blk; backward dq_acc, dq_part, dk/dv parts, lse_piece.
  auto align = [](int64_t bytes) { return (bytes + 255) / 256 * 256; };
  const int64_t forward = align(4 * qn) + align(2 * qn) + align(4 * rows);
  const int64_t backward = align(4 * qn) + align(2 * qn) + 2 * align(2 * kvn) + align(4 * rows);
  return 2 * ring_block_bytes(a, 2, 4, true) + std::max(forward, backward);
}

RingPiece zigzag_piece(int64_t T, int rank, int origin, bool causal) {
  if (!causal) return {0, T, 0, T, false};
  AUTOSP_CHECK(T % 2 == 0) << "zigzag_piece: " << T << " local tokens are not two equal chunks";
  const int64_t c = T / 2;
  if (origin == rank) return {0, T, 0, T, true};
  if (origin < rank) return {0, T, 0, c, false};
  return {c, T, 0, T, false};
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
