// DeviceScope: makes a device current on the calling thread for one scope, then restores the
// previous one. The CUDA runtime's current device is per thread, and the threads that call
// into the runtime's CUDA objects (run_local's ranks, the executor's communication thread)
// never selected one: without this they would issue work against device 0.
#pragma once
#include <cuda_runtime.h>

#include "kernels/cuda/check.h"

namespace autosp::runtime {

class DeviceScope {
 public:
  explicit DeviceScope(int device) : device_(device) {
    CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device_) CUDA_CHECK(cudaSetDevice(device_));
  }
  ~DeviceScope() {
    if (previous_ != device_) CUDA_CHECK(cudaSetDevice(previous_));
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int device_;
  int previous_ = 0;
};

}  // namespace autosp::runtime
