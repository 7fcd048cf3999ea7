// CudaRingAttention (ring_attention_cuda.h): the GPU's RingOps. The work buffer holds, in
// forward, the running output (fp32) and one block's output (bf16) and lse; in backward the
// dq accumulator (fp32) and one block's dq, dk, dv parts (bf16). lse itself is the running
// lse (the op's fp32 output), and a packed copy of the merged lse's rows of a piece that does
// not cover every query (cuDNN's statistics tensor takes no strides). A block's parts are
// valid only in its piece's rows: the merge and the accumulations read nothing else; its lse
// holds those rows packed (ring.h).
#include "runtime/cuda/ring_attention_cuda.h"

#include <cmath>
#include <limits>
#include <optional>

#include "core/check.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "kernels/cuda/ring.h"

namespace autosp::runtime {
namespace {

namespace k = kernels::cuda;
using bf16 = __nv_bfloat16;

// Stream `to` waits (on the device) for the work issued so far on `from`.
void order(cudaStream_t from, cudaEvent_t e, cudaStream_t to) {
  CUDA_CHECK(cudaEventRecord(e, from));
  CUDA_CHECK(cudaStreamWaitEvent(to, e, 0));
}

// Carves 256-aligned pieces out of one buffer: sized first (base null), then placed.
class Carve {
 public:
  explicit Carve(std::byte* base) : base_(base) {}
  template <class T>
  T* take(int64_t n) {
    std::byte* p = base_ ? base_ + at_ : nullptr;
    at_ += (int64_t(sizeof(T)) * n + 255) / 256 * 256;
    return reinterpret_cast<T*>(p);
  }
  size_t bytes() const { return size_t(at_); }

 private:
  std::byte* base_;
  int64_t at_ = 0;
};

class CudaRingOps final : public RingOps {
 public:
  CudaRingOps(CudaRingAttention& r, const Communicator& ring, const RingAttentionArgs& a, const bf16* q,
              const bf16* k, const bf16* v)
      : r_(r),
        s_(r.work_stream()),
        comm_(r.stream()),
        blocking_(!ring.stream_ordered()),
        rank_(ring.rank()),
        a_(a),
        q_(q),
        k_(k),
        v_(v) {
    order(comm_, r_.to_work(), s_);  // the op's inputs were written in the communicator's stream order
  }
  // After the schedule: the op's outputs are the communicator stream's from here on.
  void hand_back() { order(s_, r_.to_comm(), comm_); }

  void set_forward(bf16* o, float* lse) {
    o_ = o, lse_ = lse;
    carve_work([&](Carve& c) {
      o_acc_ = c.take<float>(q_elems());
      o_blk_ = c.take<bf16>(q_elems());
      lse_blk_ = c.take<float>(rows());
    });
  }
  void set_backward(const bf16* o, const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv) {
    o_in_ = o, lse_in_ = lse, dout_ = dout, dq_ = dq, dk_ = dk, dv_ = dv;
    carve_work([&](Carve& c) {
      dq_acc_ = c.take<float>(q_elems());
      dq_part_ = c.take<bf16>(q_elems());
      dk_part_ = c.take<bf16>(kv_elems());
      dv_part_ = c.take<bf16>(kv_elems());
      lse_piece_ = c.take<float>(rows());
    });
  }

  size_t kv_elem_bytes() const override { return sizeof(bf16); }
  size_t acc_elem_bytes() const override { return sizeof(float); }
  std::byte* block_buffer(int which, size_t bytes) override {
    return static_cast<std::byte*>(r_.buffer(which, bytes));
  }
  void load(const RingBlock& dst) override {
    const size_t kv = size_t(kv_elems()) * sizeof(bf16), ids = size_t(a_.B * a_.T) * sizeof(int32_t);
    CUDA_CHECK(cudaMemcpyAsync(dst.k, k_, kv, cudaMemcpyDeviceToDevice, s_));
    CUDA_CHECK(cudaMemcpyAsync(dst.v, v_, kv, cudaMemcpyDeviceToDevice, s_));
    CUDA_CHECK(cudaMemcpyAsync(dst.idx, a_.idx, ids, cudaMemcpyDeviceToDevice, s_));
    if (a_.seg) CUDA_CHECK(cudaMemcpyAsync(dst.seg, a_.seg, ids, cudaMemcpyDeviceToDevice, s_));
  }
  void zero(void* dst, size_t bytes) override { CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, s_)); }
  // The indices are on the device, and reading them would stall the stream every step: every
  // block is computed (a zigzag block always has a visible piece; otherwise the fallback
  // kernels skip the tiles its mask hides).
  bool hidden(const RingBlock&) override { return false; }
  void before_exchange() override {
    if (blocking_)
      CUDA_CHECK(cudaStreamSynchronize(s_));
    else
      order(s_, r_.to_comm(), comm_);
  }
  void after_exchange() override {
    if (!blocking_) order(comm_, r_.to_work(), s_);  // blocking: the data is in place
  }

  void attend(const RingBlock& blk, bool first) override {
    const auto piece = cudnn_piece(blk);
    RingPiece done = whole();
    if (piece && cudnn_forward(blk, *piece))
      done = *piece;
    else
      k::attention_forward(r_.attention(), block_args(blk), q_, B(blk.k), B(blk.v), o_blk_, lse_blk_, s_);
    k::ring_merge(o_acc_, lse_, o_blk_, lse_blk_, a_.B, a_.T, a_.H, a_.D, done.q0, done.q1, first, s_);
  }
  void finish_forward(bool have_result) override {
    if (have_result) {
      k::cast_f32_to_bf16(o_acc_, o_, q_elems(), s_);
      return;
    }
    zero(o_, size_t(q_elems()) * sizeof(bf16));
    k::ring_fill(lse_, rows(), -std::numeric_limits<float>::infinity(), s_);
  }

  void attend_backward(const RingBlock& blk, bool first) override {
    const auto piece = cudnn_piece(blk);
    if (piece && cudnn_backward(blk, *piece)) {
      kept_ = *piece;
    } else {
      kept_ = whole();
      k::attention_backward(r_.attention(), block_args(blk), q_, B(blk.k), B(blk.v), o_in_, lse_in_, dout_,
                            dq_part_, dk_part_, dv_part_, s_);
    }
    k::ring_accumulate(dq_acc_, dq_part_, a_.B, a_.T, a_.H * a_.D, kept_.q0, kept_.q1, first, s_);
  }
  void keep_grads(void* acc_dk, void* acc_dv, bool first) override {
    const int64_t w = a_.Hkv * a_.D;
    k::ring_accumulate(static_cast<float*>(acc_dk), dk_part_, a_.B, a_.T, w, kept_.k0, kept_.k1, first, s_);
    k::ring_accumulate(static_cast<float*>(acc_dv), dv_part_, a_.B, a_.T, w, kept_.k0, kept_.k1, first, s_);
  }
  void finish_backward(const void* acc_dk, const void* acc_dv, bool have_dq) override {
    k::cast_f32_to_bf16(static_cast<const float*>(acc_dk), dk_, kv_elems(), s_);
    k::cast_f32_to_bf16(static_cast<const float*>(acc_dv), dv_, kv_elems(), s_);
    if (have_dq)
      k::cast_f32_to_bf16(dq_acc_, dq_, q_elems(), s_);
    else
      zero(dq_, size_t(q_elems()) * sizeof(bf16));
  }

 private:
  // The work buffer: `place` takes its pieces once to size it, once more to place them.
  template <class Place>
  void carve_work(Place place) {
    Carve size(nullptr);
    place(size);
    Carve at(static_cast<std::byte*>(r_.buffer(2, size.bytes())));
    place(at);
  }
  static const bf16* B(const void* p) { return static_cast<const bf16*>(p); }
  int64_t q_elems() const { return a_.B * a_.T * a_.H * a_.D; }
  int64_t kv_elems() const { return a_.B * a_.T * a_.Hkv * a_.D; }
  int64_t rows() const { return a_.B * a_.H * a_.T; }
  k::AttentionArgs block_args(const RingBlock& blk) const { return block_attention_args<k::AttentionArgs>(a_, blk); }
  RingPiece whole() const { return {0, a_.T, 0, a_.T, false}; }
  // Element offsets of local row t in q-shaped and k-shaped tensors (batch 0; windows keep
  // the batch stride).
  int64_t q_row(int64_t t) const { return t * a_.H * a_.D; }
  int64_t kv_row(int64_t t) const { return t * a_.Hkv * a_.D; }
  // The block's piece when cuDNN may run it: zigzag layout, not forced to the fallback
  // (AUTOSP_ATTENTION=fallback), and something visible.
  std::optional<RingPiece> cudnn_piece(const RingBlock& blk) {
    if (!a_.zigzag || r_.attention().force_fallback) return std::nullopt;
    const RingPiece p = zigzag_piece(a_.T, rank_, blk.origin, a_.causal);
    if (p.q1 <= p.q0 || p.k1 <= p.k0) return std::nullopt;
    return p;
  }
  // A piece on cuDNN (false: declined, nothing done). With segment ids, the rank's own block is
  // its own rows, whose ids are a.seg: packed documents (window() passes them); a visiting
  // block's pieces pair each local document with the keys of its id in the block (the block's
  // ids stay on the device: attention_forward_cudnn_visiting).
  bool cudnn_forward(const RingBlock& blk, const RingPiece& p) {
    const int64_t qr = q_row(p.q0), kr = kv_row(p.k0);
    const k::AttentionArgs w = window(p, blk);  // lse_blk_: the piece's rows, packed
    if (visiting_documents(blk))
      return k::attention_forward_cudnn_visiting(r_.attention(), w, {a_.seg, blk.seg, p.q0, p.k0}, q_ + qr,
                                                 B(blk.k) + kr, B(blk.v) + kr, o_blk_ + qr, lse_blk_, s_);
    return k::attention_forward_cudnn(r_.attention(), w, q_ + qr, B(blk.k) + kr, B(blk.v) + kr, o_blk_ + qr,
                                      lse_blk_, s_);
  }
  bool cudnn_backward(const RingBlock& blk, const RingPiece& p) {
    const int64_t qr = q_row(p.q0), kr = kv_row(p.k0);
    const k::AttentionArgs w = window(p, blk);
    if (visiting_documents(blk))
      return k::attention_backward_cudnn_visiting(r_.attention(), w, {a_.seg, blk.seg, p.q0, p.k0}, q_ + qr,
                                                  B(blk.k) + kr, B(blk.v) + kr, o_in_ + qr, lse_of(p), dout_ + qr,
                                                  dq_part_ + qr, dk_part_ + kr, dv_part_ + kr, s_);
    return k::attention_backward_cudnn(r_.attention(), w, q_ + qr, B(blk.k) + kr, B(blk.v) + kr, o_in_ + qr,
                                       lse_of(p), dout_ + qr, dq_part_ + qr, dk_part_ + kr, dv_part_ + kr, s_);
  }
  bool visiting_documents(const RingBlock& blk) const { return a_.seg && blk.origin != rank_; }
  // The merged lse of a piece's rows, packed as cuDNN reads it. Zigzag pieces that leave
  // queries out all take the late half, so the rows are packed once per call.
  const float* lse_of(const RingPiece& p) {
    if (p.q1 - p.q0 == a_.T) return lse_in_;
    AUTOSP_CHECK(p.q1 == a_.T) << "ring attention: a piece that leaves out late queries";
    if (packed_q0_ != p.q0) {
      const int64_t n = p.q1 - p.q0;
      CUDA_CHECK(cudaMemcpy2DAsync(lse_piece_, size_t(n) * sizeof(float), lse_in_ + p.q0, size_t(a_.T) * sizeof(float),
                                   size_t(n) * sizeof(float), size_t(a_.B * a_.H), cudaMemcpyDeviceToDevice, s_));
      packed_q0_ = p.q0;
    }
    return lse_piece_;
  }
  // The kernel arguments of a piece: default positions over row windows of the block. With
  // segment ids and the rank's own block the piece is every row: the local ids serve queries
  // and keys, and default positions are causal by row, as the zigzag layout's positions
  // increase along the rows. A visiting block's ids go beside (cudnn_forward).
  k::AttentionArgs window(const RingPiece& p, const RingBlock& blk) const {
    k::AttentionArgs w;
    w.B = a_.B, w.Tq = p.q1 - p.q0, w.Tk = p.k1 - p.k0, w.H = a_.H, w.Hkv = a_.Hkv, w.D = a_.D;
    w.causal = p.causal, w.scale = a_.scale;
    w.q_rows = a_.T, w.k_rows = a_.T;
    if (a_.seg && !visiting_documents(blk)) {
      AUTOSP_CHECK(w.Tq == a_.T && w.Tk == a_.T) << "ring attention: documents in a partial piece";
      w.q_seg = w.k_seg = a_.seg;
    }
    return w;
  }

  CudaRingAttention& r_;
  cudaStream_t s_, comm_;  // kernels; exchanges
  bool blocking_;
  int rank_;
  const RingAttentionArgs& a_;
  const bf16 *q_, *k_, *v_;
  bf16* o_ = nullptr;
  float* lse_ = nullptr;
  const bf16 *o_in_ = nullptr, *dout_ = nullptr;
  const float* lse_in_ = nullptr;
  bf16 *dq_ = nullptr, *dk_ = nullptr, *dv_ = nullptr;
  // Work space (buffer 2), placed by set_forward / set_backward.
  float *o_acc_ = nullptr, *lse_blk_ = nullptr, *dq_acc_ = nullptr, *lse_piece_ = nullptr;
  bf16 *o_blk_ = nullptr, *dq_part_ = nullptr, *dk_part_ = nullptr, *dv_part_ = nullptr;
  RingPiece kept_;  // the rows of the last block's dk, dv parts (attend_backward -> keep_grads)
  int64_t packed_q0_ = -1;  // lse_piece_ holds the merged lse's rows [packed_q0_, T) (lse_of)
};

}  // namespace

CudaRingAttention::CudaRingAttention(cudaStream_t stream, std::function<void(int64_t)> on_alloc)
    : stream_(stream), on_alloc_(std::move(on_alloc)), attention_(std::make_unique<k::AttentionContext>()) {
  attention_->on_resize = on_alloc_;  // the block kernels' scratch is device memory beside the arena too
  // On the device of the communicator's stream (the caller's current device, as for it).
  CUDA_CHECK(cudaStreamCreateWithFlags(&work_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&to_comm_, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&to_work_, cudaEventDisableTiming));
}

CudaRingAttention::~CudaRingAttention() {
  cudaStreamSynchronize(stream_);
  cudaStreamSynchronize(work_);
  for (int i = 0; i < kBuffers; ++i) {
    cudaFree(buf_[i]);
    if (on_alloc_ && bytes_[i] > 0) on_alloc_(-int64_t(bytes_[i]));
  }
  attention_.reset();  // its cuDNN handle is bound to work_
  cudaEventDestroy(to_comm_);
  cudaEventDestroy(to_work_);
  cudaStreamDestroy(work_);
}

void* CudaRingAttention::buffer(int which, size_t bytes) {
  AUTOSP_CHECK(which >= 0 && which < kBuffers);
  bytes = std::max<size_t>(bytes, 256);  // never a 0-byte allocation
  if (bytes > bytes_[which]) {
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // the old buffer may still be in use
    CUDA_CHECK(cudaStreamSynchronize(work_));
    CUDA_CHECK(cudaFree(buf_[which]));
    buf_[which] = nullptr;
    const cudaError_t e = cudaMalloc(&buf_[which], bytes);
    AUTOSP_CHECK(e == cudaSuccess) << "ring attention: allocating " << bytes << " bytes: " << cudaGetErrorString(e);
    if (on_alloc_) on_alloc_(int64_t(bytes) - int64_t(bytes_[which]));
    bytes_[which] = bytes;
  }
  return buf_[which];
}

void CudaRingAttention::forward(Communicator& ring, const RingAttentionArgs& a, const bf16* q, const bf16* k,
                                const bf16* v, bf16* o, float* lse) {
  CudaRingOps ops(*this, ring, a, q, k, v);
  ops.set_forward(o, lse);
  ring_attention_forward(ring, a, ops);
  ops.hand_back();
}

void CudaRingAttention::backward(Communicator& ring, const RingAttentionArgs& a, const bf16* q, const bf16* k,
                                 const bf16* v, const bf16* o, const float* lse, const bf16* dout, bf16* dq, bf16* dk,
                                 bf16* dv) {
  CudaRingOps ops(*this, ring, a, q, k, v);
  ops.set_backward(o, lse, dout, dq, dk, dv);
  ring_attention_backward(ring, a, ops);
  ops.hand_back();
}

}  // namespace autosp::runtime
