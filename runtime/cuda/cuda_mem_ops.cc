// CudaMemOps (cuda_mem_ops.h). Strided copies are one cudaMemcpy2DAsync when the pitches are
// within the device's limit (2^31 bytes on current GPUs); beyond it (a gathered sequence
// axis of a long-context tensor can be one "row" of several GiB) they fall back to one copy
// per row, still on the stream.
#include "runtime/cuda/cuda_mem_ops.h"

#include <cstdio>

#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "runtime/cuda/device_scope.h"

namespace autosp::runtime {

CudaMemOps::CudaMemOps(cudaStream_t stream, bool synchronous) : stream_(stream), synchronous_(synchronous) {
  CUDA_CHECK(cudaGetDevice(&device_));
  int max_pitch = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&max_pitch, cudaDevAttrMaxPitch, device_));
  max_pitch_ = size_t(max_pitch);
}

CudaMemOps::~CudaMemOps() {
  // No abort here: this runs while unwinding from errors too, and the process is leaving
  // these buffers behind either way.
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) return;
  cudaSetDevice(device_);
  // Copies still queued may use the scratch buffers.
  cudaError_t e = cudaStreamSynchronize(stream_);
  for (void* p : scratch_)
    if (p && e == cudaSuccess) e = cudaFree(p);
  if (e != cudaSuccess) std::fprintf(stderr, "CudaMemOps: releasing scratch buffers: %s\n", cudaGetErrorString(e));
  // As DeviceScope does: never create a context on a device this thread only seemed to have.
  if (previous != device_ && detail::primary_context_active(previous)) cudaSetDevice(previous);
}

void CudaMemOps::finish_call() {
  if (synchronous_) CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaMemOps::copy(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  DeviceScope on(device_);
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
  finish_call();
}

void CudaMemOps::copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height) {
  AUTOSP_CHECK(width <= dpitch && width <= spitch)
      << "copy2d: width " << width << " exceeds a pitch (" << dpitch << ", " << spitch << ")";
  if (width == 0 || height == 0) return;
  DeviceScope on(device_);
  if (height == 1 || (width == dpitch && width == spitch)) {  // one contiguous range
    CUDA_CHECK(cudaMemcpyAsync(dst, src, width * height, cudaMemcpyDefault, stream_));
  } else if (dpitch <= max_pitch_ && spitch <= max_pitch_) {
    CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDefault, stream_));
  } else {
    auto* d = static_cast<char*>(dst);
    const auto* s = static_cast<const char*>(src);
    for (size_t i = 0; i < height; ++i)
      CUDA_CHECK(cudaMemcpyAsync(d + i * dpitch, s + i * spitch, width, cudaMemcpyDefault, stream_));
  }
  finish_call();
}

void CudaMemOps::to_host(void* host, const void* src, size_t bytes) {
  if (bytes == 0) return;
  DeviceScope on(device_);
  CUDA_CHECK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDefault, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaMemOps::from_host(void* dst, const void* host, size_t bytes) {
  if (bytes == 0) return;
  DeviceScope on(device_);
  CUDA_CHECK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyDefault, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void* CudaMemOps::scratch(int which, size_t bytes) {
  AUTOSP_CHECK(which >= 0 && which < kScratch) << "scratch buffer " << which << " outside [0, " << kScratch << ")";
  if (scratch_bytes_[which] < bytes) {
    DeviceScope on(device_);
    // Copies issued earlier on the stream may still read or write the old buffer.
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    CUDA_CHECK(cudaFree(scratch_[which]));
    scratch_[which] = nullptr;
    scratch_bytes_[which] = 0;
    CUDA_CHECK(cudaMalloc(&scratch_[which], bytes));
    scratch_bytes_[which] = bytes;
  }
  return scratch_[which];
}

void CudaMemOps::f32_to_bf16(void* dst, const void* src, size_t n) {
  if (n == 0) return;
  DeviceScope on(device_);
  kernels::cuda::cast_f32_to_bf16(static_cast<const float*>(src), static_cast<kernels::cuda::bf16*>(dst), int64_t(n),
                                  stream_);
  finish_call();
}

void CudaMemOps::synchronize() {
  DeviceScope on(device_);
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace autosp::runtime
