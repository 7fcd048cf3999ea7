// Ring attention (runtime/ring_attention.h) on the GPU: the same schedule, with the block
// operations on kernels/cuda (attention_forward/backward with explicit positions, and ring.h's
// merge and accumulation). q, k, v, o, dout and the gradients are bf16; lse, the running
// output and every accumulator (dq, and the travelling dk/dv) are fp32, rounded to bf16 once
// at the end, as the CPU's bf16 program rounds its fp32 ring attention.
//
// Streams: every kernel and copy of a call is issued on one stream, the communicator's: a
// stream-ordered communicator (NCCL created on that stream, comm_nccl.h) then needs no event
// between a block's transfer and its attention; with a blocking communicator (the local one
// with a device MemOps) the stream is synchronised before each exchange, so the buffers it
// reads are written and the buffer it fills is no longer read. On the GPU the transfer and
// the block attention therefore do not overlap yet: overlapping them needs a second stream
// (compute) with an event per step in each direction, left for later.
//
// One object serves one host thread at a time (its scratch and attention context are shared
// by its calls); buffers grow, never shrink, so steady-state calls allocate nothing (growing
// synchronises the stream first).
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

  cudaStream_t stream() const { return stream_; }

  // Grow-only device buffer `which` (kBuffers of them) of at least `bytes`.
  static constexpr int kBuffers = 3;  // the two travelling blocks, the per-block work space
  void* buffer(int which, size_t bytes);
  kernels::cuda::AttentionContext& attention() { return *attention_; }

 private:
  cudaStream_t stream_;
  std::function<void(int64_t)> on_alloc_;
  std::unique_ptr<kernels::cuda::AttentionContext> attention_;
  void* buf_[kBuffers] = {};
  size_t bytes_[kBuffers] = {};
};

}  // namespace autosp::runtime
