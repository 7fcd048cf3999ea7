// CUDA_CHECK(call): a failing CUDA runtime call aborts with the call, the error string, file
// and line (a device error is not something the caller can recover from mid-step).
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CUDA_CHECK(call)                                                                              \
  do {                                                                                                \
    cudaError_t autosp_err_ = (call);                                                                 \
    if (autosp_err_ != cudaSuccess) {                                                                 \
      std::fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,                       \
                   cudaGetErrorString(autosp_err_));                                                  \
      std::abort();                                                                                   \
    }                                                                                                 \
  } while (0)
