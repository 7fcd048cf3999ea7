// RMSNorm and LayerNorm over the last axis, forward and backward; x/y/dx of T, gain/bias of W.
//
// Row kernels: one block per row, fp32 sums reduced by detail::block_sum (a fixed tree, so
// deterministic). LayerNorm's variance is two-pass (mean first), as on the CPU, so rows with a
// large mean do not cancel. The backward writes each row's statistics to the caller's scratch;
// a second kernel then forms dg (and db) column by column over slices of at most 1024 rows
// (up to 256 slices, so a long sequence fills the GPU instead of 32 column blocks): a block
// owns 32 columns of one slice, its 32 thread rows stride over the slice's rows, and writes
// the slice's fp32 partial sums to scratch; a third kernel adds the slices in order. The
// slice count depends only on the row count and nothing uses atomics, so dg repeats bit for
// bit. dx must not alias dy: the parameter pass reads dy after the row pass has written dx.
#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.cuh"
#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda {

using detail::block_sum;
using detail::from_f32;
using detail::to_f32;

namespace {

// kernels

constexpr int kRowThreads = 256;
constexpr int kColTile = 32;    // columns per parameter-gradient block (one warp wide)
constexpr int kRowGroups = 32;  // thread rows per parameter-gradient block
constexpr int kParamThreads = kColTile * kRowGroups;

template <class T, class W>
__global__ void rms_norm_forward_kernel(const T* x, const W* g, T* y, int64_t dim, float eps) {
  __shared__ float shared[32];
  const int64_t base = int64_t(blockIdx.x) * dim;
  float ss = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float v = to_f32(x[base + j]);
    ss += v * v;
  }
  const float rstd = rsqrtf(block_sum(ss, shared) / float(dim) + eps);
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
    y[base + j] = from_f32<T>(to_f32(x[base + j]) * rstd * to_f32(g[j]));
}

// With xhat = x·r, r = (mean(x²) + eps)^(-1/2): dx = r (dy g − xhat · mean(dy g xhat)).
template <class T, class W>
__global__ void rms_norm_backward_kernel(const T* x, const W* g, const T* dy, T* dx, float* rstd_out, int64_t dim,
                                         float eps) {
  __shared__ float shared[32];
  const int64_t base = int64_t(blockIdx.x) * dim;
  float ss = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float v = to_f32(x[base + j]);
    ss += v * v;
  }
  const float rstd = rsqrtf(block_sum(ss, shared) / float(dim) + eps);
  float dot = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
    dot += to_f32(dy[base + j]) * to_f32(g[j]) * (to_f32(x[base + j]) * rstd);
  const float c = block_sum(dot, shared) / float(dim);
  if (threadIdx.x == 0) rstd_out[blockIdx.x] = rstd;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float xhat = to_f32(x[base + j]) * rstd;
    dx[base + j] = from_f32<T>(rstd * (to_f32(dy[base + j]) * to_f32(g[j]) - xhat * c));
  }
}

template <class T, class W>
__global__ void layer_norm_forward_kernel(const T* x, const W* g, const W* b, T* y, int64_t dim, float eps) {
  __shared__ float shared[32];
  const int64_t base = int64_t(blockIdx.x) * dim;
  float sum = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) sum += to_f32(x[base + j]);
  const float mean = block_sum(sum, shared) / float(dim);
  float ss = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float d = to_f32(x[base + j]) - mean;
    ss += d * d;
  }
  const float rstd = rsqrtf(block_sum(ss, shared) / float(dim) + eps);  // biased variance, as PyTorch
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
    y[base + j] = from_f32<T>((to_f32(x[base + j]) - mean) * rstd * to_f32(g[j]) + to_f32(b[j]));
}

// With xhat = (x − mean)·r and dxhat = dy g: dx = r (dxhat − mean(dxhat) − xhat · mean(dxhat xhat)).
template <class T, class W>
__global__ void layer_norm_backward_kernel(const T* x, const W* g, const T* dy, T* dx, float* mean_out, float* rstd_out,
                                           int64_t dim, float eps) {
  __shared__ float shared[32];
  const int64_t base = int64_t(blockIdx.x) * dim;
  float sum = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) sum += to_f32(x[base + j]);
  const float mean = block_sum(sum, shared) / float(dim);
  float ss = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float d = to_f32(x[base + j]) - mean;
    ss += d * d;
  }
  const float rstd = rsqrtf(block_sum(ss, shared) / float(dim) + eps);
  float sum_dxhat = 0, dot = 0;
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float dxhat = to_f32(dy[base + j]) * to_f32(g[j]);
    sum_dxhat += dxhat;
    dot += dxhat * ((to_f32(x[base + j]) - mean) * rstd);
  }
  const float c1 = block_sum(sum_dxhat, shared) / float(dim);
  const float c2 = block_sum(dot, shared) / float(dim);
  if (threadIdx.x == 0) {
    mean_out[blockIdx.x] = mean;
    rstd_out[blockIdx.x] = rstd;
  }
  for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
    const float xhat = (to_f32(x[base + j]) - mean) * rstd;
    dx[base + j] = from_f32<T>(rstd * (to_f32(dy[base + j]) * to_f32(g[j]) - c1 - xhat * c2));
  }
}

// part_g[slice, j] = Σ_r dy·xhat and, when part_b is given, part_b[slice, j] = Σ_r dy over
// the slice's rows, with xhat = (x − mean_r)·rstd_r (mean null for RMSNorm). Block
// (kColTile, kRowGroups) owns columns [32·blockIdx.x, +32) of slice blockIdx.y.
template <class T>
__global__ void __launch_bounds__(kParamThreads)
    norm_params_kernel(const T* x, const T* dy, const float* mean, const float* rstd, float* part_g, float* part_b,
                       int64_t rows, int64_t dim, int64_t slice_rows) {
  __shared__ float sum_g[kRowGroups][kColTile + 1], sum_b[kRowGroups][kColTile + 1];
  const int64_t j = int64_t(blockIdx.x) * kColTile + threadIdx.x;
  const int64_t first = int64_t(blockIdx.y) * slice_rows, end = min(rows, first + slice_rows);
  float acc_g = 0, acc_b = 0;
  if (j < dim) {
    for (int64_t r = first + threadIdx.y; r < end; r += kRowGroups) {
      const float d = to_f32(dy[r * dim + j]);
      const float xhat = (to_f32(x[r * dim + j]) - (mean ? mean[r] : 0.0f)) * rstd[r];
      acc_g += d * xhat;
      acc_b += d;
    }
  }
  sum_g[threadIdx.y][threadIdx.x] = acc_g;
  sum_b[threadIdx.y][threadIdx.x] = acc_b;
  __syncthreads();
  if (threadIdx.y != 0 || j >= dim) return;
  float sg = 0, sb = 0;
  for (int k = 0; k < kRowGroups; ++k) {
    sg += sum_g[k][threadIdx.x];
    sb += sum_b[k][threadIdx.x];
  }
  part_g[int64_t(blockIdx.y) * dim + j] = sg;
  if (part_b) part_b[int64_t(blockIdx.y) * dim + j] = sb;
}

// dg[j] = Σ_slice part_g[slice, j] in slice order (and db from part_b when given).
template <class W>
__global__ void norm_params_finish_kernel(const float* part_g, const float* part_b, W* dg, W* db, int64_t slices,
                                          int64_t dim) {
  AUTOSP_GRID_STRIDE(j, dim) {
    float sg = 0, sb = 0;
    for (int64_t k = 0; k < slices; ++k) {
      sg += part_g[k * dim + j];
      if (part_b) sb += part_b[k * dim + j];
    }
    dg[j] = from_f32<W>(sg);
    if (db) db[j] = from_f32<W>(sb);
  }
}

void check_sizes(const char* op, int64_t rows, int64_t dim) {
  // Rows index the grid's x dimension (< 2^31 blocks).
  AUTOSP_CHECK(rows >= 0 && dim > 0 && rows < (int64_t(1) << 31)) << op << ": rows = " << rows << ", dim = " << dim;
}

// parts: the scratch after the row statistics, room for the slices' partial sums of dg (and
// of db when it is given).
template <class T, class W>
void launch_params(const T* x, const T* dy, const float* mean, const float* rstd, W* dg, W* db, float* parts,
                   int64_t rows, int64_t dim, cudaStream_t s) {
  const int64_t slices = norm_param_slices(rows), slice_rows = (rows + slices - 1) / slices;
  float* part_g = parts;
  float* part_b = db ? parts + slices * dim : nullptr;
  const dim3 block(kColTile, kRowGroups), grid(unsigned((dim + kColTile - 1) / kColTile), unsigned(slices));
  norm_params_kernel<<<grid, block, 0, s>>>(x, dy, mean, rstd, part_g, part_b, rows, dim, slice_rows);
  CUDA_CHECK(cudaGetLastError());
  norm_params_finish_kernel<W><<<detail::grid_for(dim), 256, 0, s>>>(part_g, part_b, dg, db, slices, dim);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

// launchers

template <class T, class W>
void rms_norm_forward(const T* x, const W* g, T* y, int64_t rows, int64_t dim, float eps, cudaStream_t s) {
  check_sizes("rms_norm_forward", rows, dim);
  if (rows == 0) return;
  rms_norm_forward_kernel<<<unsigned(rows), kRowThreads, 0, s>>>(x, g, y, dim, eps);
  CUDA_CHECK(cudaGetLastError());
}

template <class T, class W>
void rms_norm_backward(const T* x, const W* g, const T* dy, T* dx, W* dg, float* scratch, int64_t rows, int64_t dim,
                       float eps, cudaStream_t s) {
  check_sizes("rms_norm_backward", rows, dim);
  if (rows == 0) {  // Σ over no rows
    CUDA_CHECK(cudaMemsetAsync(dg, 0, size_t(dim) * sizeof(W), s));
    return;
  }
  rms_norm_backward_kernel<<<unsigned(rows), kRowThreads, 0, s>>>(x, g, dy, dx, scratch, dim, eps);
  CUDA_CHECK(cudaGetLastError());
  launch_params<T, W>(x, dy, nullptr, scratch, dg, nullptr, scratch + rows, rows, dim, s);
}

template <class T, class W>
void layer_norm_forward(const T* x, const W* g, const W* b, T* y, int64_t rows, int64_t dim, float eps,
                        cudaStream_t s) {
  check_sizes("layer_norm_forward", rows, dim);
  if (rows == 0) return;
  layer_norm_forward_kernel<<<unsigned(rows), kRowThreads, 0, s>>>(x, g, b, y, dim, eps);
  CUDA_CHECK(cudaGetLastError());
}

template <class T, class W>
void layer_norm_backward(const T* x, const W* g, const T* dy, T* dx, W* dg, W* db, float* scratch, int64_t rows,
                         int64_t dim, float eps, cudaStream_t s) {
  check_sizes("layer_norm_backward", rows, dim);
  if (rows == 0) {
    CUDA_CHECK(cudaMemsetAsync(dg, 0, size_t(dim) * sizeof(W), s));
    CUDA_CHECK(cudaMemsetAsync(db, 0, size_t(dim) * sizeof(W), s));
    return;
  }
  float* mean = scratch;
  float* rstd = scratch + rows;
  layer_norm_backward_kernel<<<unsigned(rows), kRowThreads, 0, s>>>(x, g, dy, dx, mean, rstd, dim, eps);
  CUDA_CHECK(cudaGetLastError());
  launch_params<T, W>(x, dy, mean, rstd, dg, db, scratch + 2 * rows, rows, dim, s);
}

#define AUTOSP_INSTANTIATE(T, W)                                                                                     \
  template void rms_norm_forward<T, W>(const T*, const W*, T*, int64_t, int64_t, float, cudaStream_t);               \
  template void rms_norm_backward<T, W>(const T*, const W*, const T*, T*, W*, float*, int64_t, int64_t, float,       \
                                        cudaStream_t);                                                               \
  template void layer_norm_forward<T, W>(const T*, const W*, const W*, T*, int64_t, int64_t, float, cudaStream_t);   \
  template void layer_norm_backward<T, W>(const T*, const W*, const T*, T*, W*, W*, float*, int64_t, int64_t, float, \
                                          cudaStream_t);
AUTOSP_INSTANTIATE(float, float)
AUTOSP_INSTANTIATE(float, bf16)
AUTOSP_INSTANTIATE(bf16, float)
AUTOSP_INSTANTIATE(bf16, bf16)
#undef AUTOSP_INSTANTIATE

}  // namespace autosp::kernels::cuda
