// Sum over any set of axes (rank ≤ 6), its adjoint (broadcast), and the sum of squares used for
// gradient norms. Semantics of kernels/cpu/reduce.h.
//
// The shape is first coalesced as on the CPU, by the same code (kernels/shape_walk.h): size-1
// axes dropped and neighbouring axes with the same flag merged, leaving alternating kept /
// reduced groups. reduce_sum then has two layouts, each deterministic (a fixed summation tree
// per output):
//   - last group reduced (a row sum): one block per output, threads striding over the reduced
//     elements — consecutive threads read consecutive addresses — then detail::block_sum;
//   - last group kept (a bias gradient [B·T | E], a GQA group sum [.. | f | D]): a block owns 32
//     consecutive outputs (one warp wide, so reads coalesce) and up to 32 thread rows stride
//     over the reduced elements; the row partials are added in row order.
// Accumulation is fp32 (the CPU uses double; the tests bound the difference).
// sum_squares is two passes: a grid whose size depends only on n writes double partials,
// then one block adds them, so the result does not depend on the GPU either.
#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/shape_walk.h"

namespace autosp::kernels::cuda {

using detail::block_sum;
using detail::from_f32;
using detail::offset_of;
using detail::Strided;
using detail::to_f32;

namespace {

// kernels

constexpr int kColTile = 32;
constexpr int kSumSquaresThreads = 256;

template <class T>
__global__ void __launch_bounds__(1024)
    reduce_rows_kernel(const T* x, T* out, Strided kept, Strided reduced, int64_t n_red, float scale) {
  __shared__ float shared[32];
  const int64_t o = blockIdx.x;
  const T* base = x + offset_of(o, kept);
  float acc = 0.0f;
  for (int64_t r = threadIdx.x; r < n_red; r += blockDim.x) acc += to_f32(base[offset_of(r, reduced)]);
  const float total = block_sum(acc, shared);
  if (threadIdx.x == 0) out[o] = from_f32<T>(scale * total);
}

// Block (kColTile, ≤ 32): outputs p·cols + [32·tile, +32) for outer index p = blockIdx.x / tiles.
template <class T>
__global__ void __launch_bounds__(1024) reduce_cols_kernel(const T* x, T* out, Strided outer, Strided reduced,
                                                           int64_t cols, int64_t tiles, int64_t n_red, float scale) {
  __shared__ float part[32][kColTile + 1];
  const int64_t p = blockIdx.x / tiles, c = (blockIdx.x % tiles) * kColTile + threadIdx.x;
  float acc = 0.0f;
  if (c < cols) {
    const T* base = x + offset_of(p, outer) + c;
    for (int64_t r = threadIdx.y; r < n_red; r += blockDim.y) acc += to_f32(base[offset_of(r, reduced)]);
  }
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols) return;
  float total = 0.0f;
  for (unsigned k = 0; k < blockDim.y; ++k) total += part[k][threadIdx.x];
  out[p * cols + c] = from_f32<T>(scale * total);
}

// `axes` walks the full (output) shape with x's strides: 0 along the reduced axes.
template <class T>
__global__ void broadcast_kernel(const T* x, T* out, Strided axes, int64_t n, float scale) {
  AUTOSP_GRID_STRIDE(i, n) out[i] = from_f32<T>(to_f32(x[offset_of(i, axes)]) * scale);
}

__global__ void sum_squares_partial_kernel(const float* x, int64_t n, double* partial) {
  __shared__ double shared[32];
  double acc = 0.0;
  AUTOSP_GRID_STRIDE(i, n) acc += double(x[i]) * double(x[i]);
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void __launch_bounds__(1024) sum_squares_final_kernel(const double* partial, int blocks, float* out) {
  __shared__ double shared[32];
  double acc = 0.0;
  for (int b = int(threadIdx.x); b < blocks; b += int(blockDim.x)) acc += partial[b];
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) *out = float(acc);
}

using Group = shape_walk::ReduceGroup;
using shape_walk::coalesce;
using shape_walk::product;

// The kernels' index walks (detail::Strided) hold at most 6 axes.
void check_shape(const char* op, const std::vector<int64_t>& shape, const std::vector<bool>& reduce) {
  shape_walk::check_reduce_shape(op, shape, reduce, 6);
}

// The groups with the given flag among the first `end`, as a walk with their strides.
Strided select(const std::vector<Group>& groups, bool reduced, size_t end) {
  Strided s;
  for (size_t k = 0; k < end; ++k)
    if (groups[k].reduced == reduced) {
      s.size[s.rank] = groups[k].size;
      s.stride[s.rank] = groups[k].stride;
      ++s.rank;
    }
  return s;
}

}  // namespace

// launchers

template <class T>
void reduce_sum(const T* x, T* out, const std::vector<int64_t>& shape, const std::vector<bool>& reduce, float scale,
                cudaStream_t s) {
  check_shape("reduce_sum", shape, reduce);
  const int64_t n_out = product(shape, reduce, false), n_red = product(shape, reduce, true);
  if (n_out == 0) return;
  if (n_red == 0) {  // empty sums
    CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(n_out) * sizeof(T), s));
    return;
  }
  const std::vector<Group> groups = coalesce(shape, reduce);
  if (groups.empty() || groups.back().reduced) {
    AUTOSP_CHECK(n_out < (int64_t(1) << 31)) << "reduce_sum: " << n_out << " outputs";
    // Few outputs get wide blocks (a whole-tensor sum would otherwise run on 256 threads);
    // short rows get narrow ones.
    const int64_t width = std::min<int64_t>(n_out < 128 ? 1024 : 256, (n_red + 31) / 32 * 32);
    reduce_rows_kernel<<<unsigned(n_out), unsigned(width), 0, s>>>(x, out, select(groups, false, groups.size()),
                                                                   select(groups, true, groups.size()), n_red, scale);
  } else {
    const int64_t cols = groups.back().size, tiles = (cols + kColTile - 1) / kColTile;
    const int64_t blocks = (n_out / cols) * tiles;
    AUTOSP_CHECK(blocks < (int64_t(1) << 31)) << "reduce_sum: " << blocks << " blocks";
    const dim3 block(kColTile, unsigned(std::min<int64_t>(32, n_red)));
    reduce_cols_kernel<<<unsigned(blocks), block, 0, s>>>(x, out, select(groups, false, groups.size() - 1),
                                                          select(groups, true, groups.size()), cols, tiles, n_red,
                                                          scale);
  }
  CUDA_CHECK(cudaGetLastError());
}

template <class T>
void broadcast(const T* x, T* out, const std::vector<int64_t>& shape, const std::vector<bool>& reduce, float scale,
               cudaStream_t s) {
  check_shape("broadcast", shape, reduce);
  const int64_t n = product(shape, reduce, false) * product(shape, reduce, true);
  if (n == 0) return;
  std::vector<Group> groups = coalesce(shape, reduce);
  shape_walk::restride_for_broadcast(groups);  // x is compact: reduced groups get stride 0
  Strided axes;
  for (const Group& g : groups) {
    axes.size[axes.rank] = g.size;
    axes.stride[axes.rank] = g.stride;
    ++axes.rank;
  }
  broadcast_kernel<<<detail::grid_for(n), 256, 0, s>>>(x, out, axes, n, scale);
  CUDA_CHECK(cudaGetLastError());
}

void sum_squares(const float* x, int64_t n, float* out, double* scratch, cudaStream_t s) {
  AUTOSP_CHECK(n >= 0) << "sum_squares: n = " << n;
  if (n == 0) {
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float), s));
    return;
  }
  const int blocks = int(std::min<int64_t>(kSumSquaresScratch, (n + kSumSquaresThreads - 1) / kSumSquaresThreads));
  sum_squares_partial_kernel<<<blocks, kSumSquaresThreads, 0, s>>>(x, n, scratch);
  CUDA_CHECK(cudaGetLastError());
  sum_squares_final_kernel<<<1, 1024, 0, s>>>(scratch, blocks, out);
  CUDA_CHECK(cudaGetLastError());
}

template void reduce_sum<float>(const float*, float*, const std::vector<int64_t>&, const std::vector<bool>&, float,
                                cudaStream_t);
template void reduce_sum<bf16>(const bf16*, bf16*, const std::vector<int64_t>&, const std::vector<bool>&, float,
                               cudaStream_t);
template void broadcast<float>(const float*, float*, const std::vector<int64_t>&, const std::vector<bool>&, float,
                               cudaStream_t);
template void broadcast<bf16>(const bf16*, bf16*, const std::vector<int64_t>&, const std::vector<bool>&, float,
                              cudaStream_t);

}  // namespace autosp::kernels::cuda
