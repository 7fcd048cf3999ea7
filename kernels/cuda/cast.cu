// f32 <-> bf16 casts (round to nearest even), grid-stride.
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda {

// kernels

__global__ void f32_to_bf16_kernel(const float* x, bf16* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}

__global__ void bf16_to_f32_kernel(const bf16* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __bfloat162float(x[i]);
}

// launchers

static int blocks_for(int64_t n) { return int(std::min<int64_t>((n + 255) / 256, 65535 * 8)); }

void cast_f32_to_bf16(const float* x, bf16* y, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  f32_to_bf16_kernel<<<blocks_for(n), 256, 0, s>>>(x, y, n);
  CUDA_CHECK(cudaGetLastError());
}

void cast_bf16_to_f32(const bf16* x, float* y, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  bf16_to_f32_kernel<<<blocks_for(n), 256, 0, s>>>(x, y, n);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace autosp::kernels::cuda
