// SiLU and SwiGLU (silu(gate) · up), forward and backward, elementwise in fp32.
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda {

// kernels

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + __expf(-x)); }

#define AUTOSP_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void silu_forward_kernel(const bf16* x, bf16* y, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {
    const float v = __bfloat162float(x[i]);
    y[i] = __float2bfloat16_rn(v * sigmoid(v));
  }
}

// d silu(x)/dx = σ(x)·(1 + x·(1 − σ(x)))
__global__ void silu_backward_kernel(const bf16* x, const bf16* dy, bf16* dx, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {
    const float v = __bfloat162float(x[i]), s = sigmoid(v);
    dx[i] = __float2bfloat16_rn(__bfloat162float(dy[i]) * s * (1.0f + v * (1.0f - s)));
  }
}

__global__ void swiglu_forward_kernel(const bf16* gate, const bf16* up, bf16* y, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {
    const float g = __bfloat162float(gate[i]);
    y[i] = __float2bfloat16_rn(g * sigmoid(g) * __bfloat162float(up[i]));
  }
}

__global__ void swiglu_backward_kernel(const bf16* gate, const bf16* up, const bf16* dy, bf16* dgate, bf16* dup,
                                       int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {
    const float g = __bfloat162float(gate[i]), u = __bfloat162float(up[i]), d = __bfloat162float(dy[i]);
    const float s = sigmoid(g);
    dgate[i] = __float2bfloat16_rn(d * u * s * (1.0f + g * (1.0f - s)));
    dup[i] = __float2bfloat16_rn(d * g * s);
  }
}

// launchers

static int blocks_for(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, 65535 * 8)); }

void silu_forward(const bf16* x, bf16* y, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  silu_forward_kernel<<<blocks_for(n), 256, 0, s>>>(x, y, n);
  CUDA_CHECK(cudaGetLastError());
}

void silu_backward(const bf16* x, const bf16* dy, bf16* dx, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  silu_backward_kernel<<<blocks_for(n), 256, 0, s>>>(x, dy, dx, n);
  CUDA_CHECK(cudaGetLastError());
}

void swiglu_forward(const bf16* gate, const bf16* up, bf16* y, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  swiglu_forward_kernel<<<blocks_for(n), 256, 0, s>>>(gate, up, y, n);
  CUDA_CHECK(cudaGetLastError());
}

void swiglu_backward(const bf16* gate, const bf16* up, const bf16* dy, bf16* dgate, bf16* dup, int64_t n,
                     cudaStream_t s) {
  if (n == 0) return;
  swiglu_backward_kernel<<<blocks_for(n), 256, 0, s>>>(gate, up, dy, dgate, dup, n);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace autosp::kernels::cuda
