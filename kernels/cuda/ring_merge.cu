// Ring attention's merge and accumulation kernels (ring.h). The merge gives each (b, i, h) row
// to one warp: its lanes stride over D (coalesced), every lane reads the row's old lse before
// lane 0 writes the new one, so no other warp touches the row. Accumulation and fill are one
// thread per element, grid-stride.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/check.h"
#include "kernels/cuda/ring.h"

namespace autosp::kernels::cuda {

// kernels

__global__ void ring_merge_kernel(float* o, float* lse, const bf16* o_blk, const float* lse_blk, int64_t T,
                                  int64_t H, int64_t D, int64_t rows, int64_t lo, int64_t hi, bool first) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; row < rows; row += warps) {
    // row = (b·T + i)·H + h, o's row order; lse is [B, H, T].
    const int64_t h = row % H, bt = row / H, i = bt % T, b = bt / T;
    const int64_t l_at = (b * H + h) * T + i;
    const bool inside = i >= lo && i < hi;  // outside: not computed
    const float l_blk = inside ? lse_blk[(b * H + h) * (hi - lo) + (i - lo)] : -INFINITY;
    const float l = first ? -INFINITY : lse[l_at];
    float* orow = o + row * D;
    const bf16* brow = o_blk + row * D;
    float l_new;
    if (l_blk == -INFINITY) {
      if (!first) continue;  // the block adds nothing
      for (int64_t d = lane; d < D; d += 32) orow[d] = 0.0f;
      l_new = -INFINITY;
    } else if (l == -INFINITY) {
      for (int64_t d = lane; d < D; d += 32) orow[d] = __bfloat162float(brow[d]);
      l_new = l_blk;
    } else {
      l_new = fmaxf(l, l_blk) + log1pf(expf(-fabsf(l - l_blk)));
      const float w = expf(l - l_new), w_blk = expf(l_blk - l_new);
      for (int64_t d = lane; d < D; d += 32) orow[d] = w * orow[d] + w_blk * __bfloat162float(brow[d]);
    }
    __syncwarp();  // every lane has read the old lse
    if (lane == 0) lse[l_at] = l_new;
  }
}

__global__ void ring_accumulate_kernel(float* acc, const bf16* part, int64_t n, int64_t T, int64_t W, int64_t lo,
                                       int64_t hi, bool first) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / W % T;
    if (t >= lo && t < hi)
      acc[i] = first ? __bfloat162float(part[i]) : acc[i] + __bfloat162float(part[i]);
    else if (first)
      acc[i] = 0.0f;
  }
}

__global__ void ring_fill_kernel(float* x, int64_t n, float value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = value;
}

// launchers

static int blocks_for(int64_t n, int per_block) {
  return int(std::min<int64_t>((n + per_block - 1) / per_block, 65535 * 8));
}

void ring_merge(float* o, float* lse, const bf16* o_blk, const float* lse_blk, int64_t B, int64_t T, int64_t H,
                int64_t D, int64_t lo, int64_t hi, bool first, cudaStream_t s) {
  const int64_t rows = B * T * H;
  if (rows == 0 || D == 0) return;
  ring_merge_kernel<<<blocks_for(rows, 8), 256, 0, s>>>(o, lse, o_blk, lse_blk, T, H, D, rows, lo, hi, first);
  CUDA_CHECK(cudaGetLastError());
}

void ring_accumulate(float* acc, const bf16* part, int64_t B, int64_t T, int64_t W, int64_t lo, int64_t hi,
                     bool first, cudaStream_t s) {
  const int64_t n = B * T * W;
  if (n == 0) return;
  ring_accumulate_kernel<<<blocks_for(n, 256), 256, 0, s>>>(acc, part, n, T, W, lo, hi, first);
  CUDA_CHECK(cudaGetLastError());
}

void ring_fill(float* x, int64_t n, float value, cudaStream_t s) {
  if (n == 0) return;
  ring_fill_kernel<<<blocks_for(n, 256), 256, 0, s>>>(x, n, value);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace autosp::kernels::cuda
