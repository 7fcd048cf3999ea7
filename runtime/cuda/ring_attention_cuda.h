// Ring attention (runtime/ring_attention.h) on the GPU: the same schedule, with the block
// operations on kernels/cuda (attention_forward/backward with explicit positions, and ring.h's
// merge and accumulation). q, k, v, o, dout and the gradients are bf16; lse, the running
// output and every accumulator (dq, and the travelling dk/dv) are fp32, rounded to bf16 once
// at the end, as the CPU's bf16 program rounds its fp32 ring attention.
//
// Blocks: with the zigzag layout (RingAttentionArgs::zigzag), each block's visible keys are
// one piece known on the host (zigzag_piece), which cuDNN runs as one plain causal or full
// attention on row windows of the block (AttentionArgs::q_rows); its merge and accumulation
// then touch only the piece's rows. With segment ids cuDNN runs them in its ragged layout: the
// rank's own block as packed documents, a visiting block's piece as each local document paired
// with the keys of its id in the block (attention_forward_cudnn_visiting). The local ids are
// scanned once per step (the document count reaches the host: AttentionContext::begin_step);
// the visiting block's never leave the device. Otherwise, or when cuDNN declines the piece,
// the fallback kernels attend the whole block with explicit positions (and segments).
//
// Streams: the exchanges run on the stream given at construction, the communicator's (an
// NCCL communicator created on it, comm_nccl.h, enqueues its transfers there), and every
// kernel and copy on a stream of this object's own, so a block's attention overlaps the next
// block's transfer. Events order them: the transfer that overwrites a buffer waits for the
// kernels that read it (before_exchange), the kernels that read a received block wait for its
// transfer (after_exchange), and a call begins after the work already on the communicator's
// stream and ends with that stream waiting for its kernels, so callers see one stream. With a
// blocking communicator (the local one with a device MemOps) the kernel stream is
// synchronised before each exchange instead, so the buffers it reads are written and the
// buffer it fills is no longer read.
//
// One object serves one host thread at a time (its scratch and attention context are shared
// by its calls); buffers grow, never shrink, so steady-state calls allocate nothing (growing
// synchronises both streams first).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "runtime/comm.h"
#include "runtime/ring_attention.h"

namespace autosp::kernels::cuda {
struct AttentionContext;
}

namespace autosp::runtime {

class CudaRingAttention {
 public:
  using bf16 = __nv_bfloat16;
  // on_alloc(delta bytes) is told of every growth (the backend's memory accounting); may be null.
  explicit CudaRingAttention(cudaStream_t stream, std::function<void(int64_t)> on_alloc = nullptr);
  ~CudaRingAttention();
  CudaRingAttention(const CudaRingAttention&) = delete;
  CudaRingAttention& operator=(const CudaRingAttention&) = delete;

  // As ring_attention.h's, on device pointers (a.idx and a.seg too). Collective over ring.
  void forward(Communicator& ring, const RingAttentionArgs& a, const bf16* q, const bf16* k, const bf16* v, bf16* o,
               float* lse);
  void backward(Communicator& ring, const RingAttentionArgs& a, const bf16* q, const bf16* k, const bf16* v,
                const bf16* o, const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv);

  cudaStream_t stream() const { return stream_; }       // the communicator's: exchanges
  cudaStream_t work_stream() const { return work_; }    // this object's: kernels and copies

  // Grow-only device buffer `which` (kBuffers of them) of at least `bytes`.
  static constexpr int kBuffers = 3;  // the two travelling blocks, the per-block work space
  void* buffer(int which, size_t bytes);
  kernels::cuda::AttentionContext& attention() { return *attention_; }
  // The event pair between the two streams (ring_attention_cuda.cc orders them per exchange).
  cudaEvent_t to_comm() const { return to_comm_; }
  cudaEvent_t to_work() const { return to_work_; }

 private:
  cudaStream_t stream_;
  cudaStream_t work_ = nullptr;
  cudaEvent_t to_comm_ = nullptr, to_work_ = nullptr;
  std::function<void(int64_t)> on_alloc_;
  std::unique_ptr<kernels::cuda::AttentionContext> attention_;
  void* buf_[kBuffers] = {};
  size_t bytes_[kBuffers] = {};
};

}  // namespace autosp::runtime
