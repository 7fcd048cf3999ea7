// Device-side helpers shared by the .cu files (not part of the launcher API in kernels.h):
// element conversions, so one kernel template serves fp32 and bf16 with fp32 arithmetic; the
// grid-size rule of grid-stride loops; and a block sum whose order is fixed by blockDim alone,
// which is what makes the reductions deterministic.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda::detail {

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) {
  return __float2bfloat16_rn(x);
}

// Blocks for a grid-stride loop over n items: one item per thread up to a cap that fills any
// GPU many times over; past it, threads loop.
inline unsigned grid_for(int64_t n, int threads = 256) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 65535 * 8)));
}

#define AUTOSP_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// Σ v over a 1-D block whose size is a multiple of 32, returned to every thread. Shuffles within
// each warp, then warp 0 over the warp totals: a fixed tree for a given blockDim, so the result
// repeats bit for bit. `shared` holds 32 values; it may be reused as soon as this returns.
template <class Acc>
__device__ Acc block_sum(Acc v, Acc* shared) {
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32, warps = int(blockDim.x) / 32;
  for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? shared[lane] : Acc(0);
    for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const Acc total = shared[0];
  __syncthreads();
  return total;
}

// An index walk over up to 6 axes (row-major, last fastest), each with its own stride into some
// buffer: offset_of gives the offset of flat index i ∈ [0, Π size). Passed to kernels by value.
struct Strided {
  int rank = 0;
  int64_t size[6] = {};
  int64_t stride[6] = {};
};

__device__ __forceinline__ int64_t offset_of(int64_t i, const Strided& a) {
  if (a.rank == 1) return i * a.stride[0];  // the common walk, without 64-bit divisions
  int64_t off = 0;
  for (int k = a.rank - 1; k >= 0; --k) {
    off += (i % a.size[k]) * a.stride[k];
    i /= a.size[k];
  }
  return off;
}

}  // namespace autosp::kernels::cuda::detail
