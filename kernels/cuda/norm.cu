// RMSNorm forward and backward over the last axis: one block per row, fp32 sums reduced in
// shared memory in a fixed order (deterministic). dg is a second kernel, one thread per
// column walking the rows, so no atomics are needed.
#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda {

// kernels

constexpr int kThreads = 256;

__device__ float block_sum(float v, float* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  const float total = shared[0];
  __syncthreads();
  return total;
}

__global__ void rms_norm_forward_kernel(const bf16* x, const float* g, bf16* y, int64_t dim, float eps) {
  __shared__ float shared[kThreads];
  const bf16* xr = x + blockIdx.x * dim;
  float ss = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float v = __bfloat162float(xr[j]);
    ss += v * v;
  }
  const float rstd = rsqrtf(block_sum(ss, shared) / float(dim) + eps);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
    y[blockIdx.x * dim + j] = __float2bfloat16_rn(__bfloat162float(xr[j]) * rstd * g[j]);
}

// dx = rstd·(g·dy) − x·rstd³·mean(g·dy·x)
__global__ void rms_norm_backward_kernel(const bf16* x, const float* g, const bf16* dy, bf16* dx, float* rstd_out,
                                         int64_t dim, float eps) {
  __shared__ float shared[kThreads];
  const int64_t base = blockIdx.x * dim;
  float ss = 0, dot = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float v = __bfloat162float(x[base + j]);
    ss += v * v;
    dot += g[j] * __bfloat162float(dy[base + j]) * v;
  }
  const float rstd = rsqrtf(block_sum(ss, shared) / float(dim) + eps);
  const float mean_dot = block_sum(dot, shared) / float(dim);
  if (threadIdx.x == 0) rstd_out[blockIdx.x] = rstd;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float v = __bfloat162float(x[base + j]);
    dx[base + j] = __float2bfloat16_rn(rstd * g[j] * __bfloat162float(dy[base + j]) - v * rstd * rstd * rstd * mean_dot);
  }
}

__global__ void rms_norm_dg_kernel(const bf16* x, const bf16* dy, const float* rstd, float* dg, int64_t rows,
                                   int64_t dim) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j >= dim) return;
  float acc = 0;
  for (int64_t r = 0; r < rows; ++r)
    acc += __bfloat162float(dy[r * dim + j]) * __bfloat162float(x[r * dim + j]) * rstd[r];
  dg[j] = acc;
}

// launchers

void rms_norm_forward(const bf16* x, const float* g, bf16* y, int64_t rows, int64_t dim, float eps, cudaStream_t s) {
  AUTOSP_CHECK(rows >= 0 && dim > 0 && rows < (int64_t(1) << 31)) << "rms_norm " << rows << "x" << dim;
  if (rows == 0) return;
  rms_norm_forward_kernel<<<unsigned(rows), kThreads, 0, s>>>(x, g, y, dim, eps);
  CUDA_CHECK(cudaGetLastError());
}

void rms_norm_backward(const bf16* x, const float* g, const bf16* dy, bf16* dx, float* dg, float* rstd,
                       int64_t rows, int64_t dim, float eps, cudaStream_t s) {
  AUTOSP_CHECK(rows >= 0 && dim > 0 && rows < (int64_t(1) << 31)) << "rms_norm " << rows << "x" << dim;
  if (rows == 0) return;
  rms_norm_backward_kernel<<<unsigned(rows), kThreads, 0, s>>>(x, g, dy, dx, rstd, dim, eps);
  CUDA_CHECK(cudaGetLastError());
  rms_norm_dg_kernel<<<unsigned((dim + 255) / 256), 256, 0, s>>>(x, dy, rstd, dg, rows, dim);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace autosp::kernels::cuda
