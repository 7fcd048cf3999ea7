// CudaMemOps: the MemOps of device buffers, copying with the GPU's copy engine on one stream
// (cudaMemcpyDefault: any mix of device and host pointers under unified addressing).
//
// synchronous = true: every call completes before it returns, and copies may be issued from
// several threads at once (the local communicator's ranks share one; run_local in comm.h).
// synchronous = false: copy and copy2d only enqueue on the stream and return (packing for a
// stream-ordered communicator on its stream); to_host and from_host still complete on return.
//
// Every call runs on the device that was current when the object was made, whatever the
// calling thread has selected. scratch() is for one thread at a time; its buffers are
// cudaMalloc'd when they grow (never shrunk) and freed with the object. The stream must
// outlive the object.
#pragma once
#include <cuda_runtime.h>

#include <array>

#include "runtime/mem_ops.h"

namespace autosp::runtime {

class CudaMemOps final : public MemOps {
 public:
  CudaMemOps(cudaStream_t stream, bool synchronous);
  ~CudaMemOps() override;
  CudaMemOps(const CudaMemOps&) = delete;
  CudaMemOps& operator=(const CudaMemOps&) = delete;

  bool device() const override { return true; }
  void copy(void* dst, const void* src, size_t bytes) override;
  void copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height) override;
  void to_host(void* host, const void* src, size_t bytes) override;
  void from_host(void* dst, const void* host, size_t bytes) override;
  void* scratch(int which, size_t bytes) override;
  void f32_to_bf16(void* dst, const void* src, size_t n) override;
  void synchronize() override;

  cudaStream_t stream() const { return stream_; }
  bool synchronous() const { return synchronous_; }

 private:
  // Waits for the stream when every call must complete before returning.
  void finish_call();

  cudaStream_t stream_;
  bool synchronous_;
  int device_ = 0;
  size_t max_pitch_ = 0;  // the largest pitch cudaMemcpy2D accepts on this device
  std::array<void*, kScratch> scratch_{};
  std::array<size_t, kScratch> scratch_bytes_{};
};

}  // namespace autosp::runtime
