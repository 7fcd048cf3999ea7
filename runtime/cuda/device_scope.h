// DeviceScope: makes a device current on the calling thread for one scope, then restores the
// previous one. The CUDA runtime's current device is per thread, and the threads that call
// into the runtime's CUDA objects (run_local's ranks, the executor's communication thread)
// never selected one: without this they would issue work against device 0.
//
// The restore is skipped when the previous device's primary context is not active in this
// process. A thread that never selected a device reads device 0 from cudaGetDevice, and since
// CUDA 12 cudaSetDevice initialises the primary context of the device it names: restoring
// "device 0" on the communication thread of a rank on GPU 3 would create a context on GPU 0
// (hundreds of MiB of its memory) for every rank of a multi-GPU node. Not restoring loses
// nothing there: every call into the runtime's CUDA objects opens its own scope. (PyTorch's
// device guard checks the primary context for the same reason.)
#pragma once
#include <cuda.h>
#include <cuda_runtime.h>

#include "kernels/cuda/check.h"

namespace autosp::runtime {

namespace detail {

// Whether `device`'s primary context is active in this process (true when the driver cannot
// be asked, so the restore then happens as it always did). The driver is reached through the
// runtime's entry-point query, so nothing links libcuda.
inline bool primary_context_active(int device) {
  using GetState = CUresult (*)(CUdevice, unsigned int*, int*);
  static const GetState get_state = [] {
    void* fn = nullptr;
#if CUDART_VERSION >= 12000
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    const cudaError_t e =
        cudaGetDriverEntryPointByVersion("cuDevicePrimaryCtxGetState", &fn, 12000, cudaEnableDefault, &found);
#else
    const cudaError_t e = cudaGetDriverEntryPoint("cuDevicePrimaryCtxGetState", &fn, cudaEnableDefault, &found);
#endif
    if (e != cudaSuccess || found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();  // not sticky, but leave nothing for a launcher's check to report
      fn = nullptr;
    }
#endif  // before CUDA 12 cudaSetDevice creates no context: restoring is harmless
    return reinterpret_cast<GetState>(fn);
  }();
  if (!get_state) return true;
  unsigned int flags = 0;
  int active = 0;
  // A CUdevice is the device ordinal (cuDeviceGet(&d, i) gives i).
  return get_state(CUdevice(device), &flags, &active) != CUDA_SUCCESS || active != 0;
}

}  // namespace detail

class DeviceScope {
 public:
  explicit DeviceScope(int device) : device_(device) {
    CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device_) CUDA_CHECK(cudaSetDevice(device_));
  }
  ~DeviceScope() {
    if (previous_ != device_ && detail::primary_context_active(previous_)) CUDA_CHECK(cudaSetDevice(previous_));
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int device_;
  int previous_ = 0;
};

}  // namespace autosp::runtime
