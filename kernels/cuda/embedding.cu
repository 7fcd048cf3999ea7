// Token embedding lookup and its deterministic backward.
//
// Forward: a row gather, moved in the widest chunks (16 down to 2 bytes) that the row size and
// both pointers allow.
//
// Backward: dw[v] = Σ dy[i] over the tokens i with id v. A scatter-add with atomics would add
// each row's terms in whatever order the threads arrive, so the sum would change run to run.
// Instead the token positions are sorted by id with CUB's radix sort, which is stable: within
// one id the positions stay in increasing order. A binary search per id then finds where each
// id's run starts, and one thread per (id, column) adds the run's dy rows in that order in fp32
// — the same additions, in the same order, as the CPU kernel's serial loop, so fp32 results
// are equal bit for bit. Ids with no token get zero rows. Splitting the columns over blocks
// keeps a very frequent id (thousands of rows) from serialising on one block.
//
// Scratch (embedding_backward_scratch_bytes), each part 256-byte aligned: the positions, the
// sorted ids and the sorted positions, int32 [N] each; the run starts, int32 [vocab + 1]; and
// CUB's temporary storage.
#include <cub/device/device_radix_sort.cuh>

#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.cuh"
#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda {

using detail::from_f32;
using detail::to_f32;

namespace {

// kernels

constexpr int kColThreads = 256;     // columns per backward block
constexpr int64_t kIdBlocks = 8192;  // blocks along the ids in the backward's grid

template <class U>
__global__ void gather_rows_kernel(const int32_t* tokens, const U* w, U* y, int64_t n_tokens, int64_t row_units) {
  AUTOSP_GRID_STRIDE(i, n_tokens * row_units) {
    const int64_t t = i / row_units, k = i - t * row_units;
    y[i] = w[int64_t(tokens[t]) * row_units + k];
  }
}

// An id outside the table is a bug upstream (the data loader validates ids); trapping fails
// the next CUDA call loudly instead of letting the sort and the sums run out of bounds.
__global__ void positions_kernel(const int32_t* tokens, int32_t* positions, int64_t n, int64_t vocab) {
  AUTOSP_GRID_STRIDE(i, n) {
    const int32_t v = tokens[i];
    if (v < 0 || v >= vocab) __trap();
    positions[i] = int32_t(i);
  }
}

// starts[v] = the first index k of the sorted ids with ids[k] >= v, for v in [0, vocab]: id v's
// positions are order[starts[v] .. starts[v + 1]).
__global__ void run_starts_kernel(const uint32_t* sorted_ids, int64_t n, int64_t vocab, int32_t* starts) {
  AUTOSP_GRID_STRIDE(v, vocab + 1) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (int64_t(sorted_ids[mid]) < v)
        lo = mid + 1;
      else
        hi = mid;
    }
    starts[v] = int32_t(lo);
  }
}

// Block (x, y) owns columns [256·y, +256) of ids x, x + gridDim.x, ...; one thread per column.
template <class T>
__global__ void embedding_backward_kernel(const int32_t* starts, const int32_t* order, const T* dy, T* dw,
                                          int64_t vocab, int64_t dim) {
  const int64_t j = int64_t(blockIdx.y) * kColThreads + threadIdx.x;
  if (j >= dim) return;
  for (int64_t v = blockIdx.x; v < vocab; v += gridDim.x) {
    const int64_t hi = starts[v + 1];
    float acc = 0.0f;
    int64_t k = starts[v];
    // Four loads in flight, added strictly in position order.
    for (; k + 4 <= hi; k += 4) {
      const float a = to_f32(dy[int64_t(order[k]) * dim + j]), b = to_f32(dy[int64_t(order[k + 1]) * dim + j]);
      const float c = to_f32(dy[int64_t(order[k + 2]) * dim + j]), d = to_f32(dy[int64_t(order[k + 3]) * dim + j]);
      acc += a;
      acc += b;
      acc += c;
      acc += d;
    }
    for (; k < hi; ++k) acc += to_f32(dy[int64_t(order[k]) * dim + j]);
    dw[v * dim + j] = from_f32<T>(acc);
  }
}

// Bits of the largest id: the sort looks at no more.
int id_bits(int64_t vocab) {
  int bits = 1;
  while (bits < 31 && (int64_t(1) << bits) < vocab) ++bits;
  return bits;
}

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

size_t sort_temp_bytes(int64_t n_tokens, int64_t vocab) {
  size_t bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t*>(nullptr),
                                             static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                             static_cast<int32_t*>(nullptr), int(n_tokens), 0, id_bits(vocab)));
  return bytes;
}

template <class U>
void gather_rows(const int32_t* tokens, const void* w, void* y, int64_t n_tokens, int64_t row_bytes, cudaStream_t s) {
  const int64_t units = row_bytes / int64_t(sizeof(U));
  gather_rows_kernel<<<detail::grid_for(n_tokens * units), 256, 0, s>>>(tokens, static_cast<const U*>(w),
                                                                        static_cast<U*>(y), n_tokens, units);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

// launchers

template <class T>
void embedding_forward(const int32_t* tokens, const T* w, T* y, int64_t n_tokens, int64_t dim, cudaStream_t s) {
  AUTOSP_CHECK(n_tokens >= 0 && dim > 0) << "embedding_forward: n_tokens = " << n_tokens << ", dim = " << dim;
  if (n_tokens == 0) return;
  const int64_t row_bytes = dim * int64_t(sizeof(T));
  // The widest chunk dividing the row size and both addresses.
  const uint64_t bits = uint64_t(row_bytes) | reinterpret_cast<uintptr_t>(w) | reinterpret_cast<uintptr_t>(y) | 16u;
  switch (bits & (~bits + 1)) {
    case 16:
      return gather_rows<uint4>(tokens, w, y, n_tokens, row_bytes, s);
    case 8:
      return gather_rows<uint2>(tokens, w, y, n_tokens, row_bytes, s);
    case 4:
      return gather_rows<uint32_t>(tokens, w, y, n_tokens, row_bytes, s);
    default:
      return gather_rows<uint16_t>(tokens, w, y, n_tokens, row_bytes, s);
  }
}

size_t embedding_backward_scratch_bytes(int64_t n_tokens, int64_t vocab) {
  AUTOSP_CHECK(n_tokens >= 0 && n_tokens < (int64_t(1) << 31) && vocab > 0 && vocab < (int64_t(1) << 31))
      << "embedding_backward: n_tokens = " << n_tokens << ", vocab = " << vocab;
  if (n_tokens == 0) return 0;
  return 3 * align256(size_t(n_tokens) * sizeof(int32_t)) + align256(size_t(vocab + 1) * sizeof(int32_t)) +
         align256(sort_temp_bytes(n_tokens, vocab));
}

template <class T>
void embedding_backward(const int32_t* tokens, const T* dy, T* dw, int64_t n_tokens, int64_t vocab, int64_t dim,
                        void* scratch, cudaStream_t s) {
  AUTOSP_CHECK(n_tokens >= 0 && n_tokens < (int64_t(1) << 31) && vocab > 0 && vocab < (int64_t(1) << 31) && dim > 0 &&
               (dim + kColThreads - 1) / kColThreads < 65536)
      << "embedding_backward: n_tokens = " << n_tokens << ", vocab = " << vocab << ", dim = " << dim;
  if (n_tokens == 0) {  // every row is an empty sum
    CUDA_CHECK(cudaMemsetAsync(dw, 0, size_t(vocab * dim) * sizeof(T), s));
    return;
  }
  char* base = static_cast<char*>(scratch);
  const size_t list = align256(size_t(n_tokens) * sizeof(int32_t));
  int32_t* positions = reinterpret_cast<int32_t*>(base);
  uint32_t* sorted_ids = reinterpret_cast<uint32_t*>(base + list);
  int32_t* order = reinterpret_cast<int32_t*>(base + 2 * list);
  int32_t* starts = reinterpret_cast<int32_t*>(base + 3 * list);
  void* temp = base + 3 * list + align256(size_t(vocab + 1) * sizeof(int32_t));
  size_t temp_bytes = sort_temp_bytes(n_tokens, vocab);

  positions_kernel<<<detail::grid_for(n_tokens), 256, 0, s>>>(tokens, positions, n_tokens, vocab);
  CUDA_CHECK(cudaGetLastError());
  // Ids are non-negative (positions_kernel traps before the sort otherwise), so their int32
  // bits sort as uint32.
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, reinterpret_cast<const uint32_t*>(tokens), sorted_ids,
                                             positions, order, int(n_tokens), 0, id_bits(vocab), s));
  run_starts_kernel<<<detail::grid_for(vocab + 1), 256, 0, s>>>(sorted_ids, n_tokens, vocab, starts);
  CUDA_CHECK(cudaGetLastError());
  // Enough id blocks to fill the GPU; each then walks ids gridDim.x apart, so a table of mostly
  // unused ids costs a few blocks' worth of launches, not one per id.
  const dim3 grid(unsigned(std::min<int64_t>(vocab, kIdBlocks)), unsigned((dim + kColThreads - 1) / kColThreads));
  embedding_backward_kernel<<<grid, kColThreads, 0, s>>>(starts, order, dy, dw, vocab, dim);
  CUDA_CHECK(cudaGetLastError());
}

template void embedding_forward<float>(const int32_t*, const float*, float*, int64_t, int64_t, cudaStream_t);
template void embedding_forward<bf16>(const int32_t*, const bf16*, bf16*, int64_t, int64_t, cudaStream_t);
template void embedding_backward<float>(const int32_t*, const float*, float*, int64_t, int64_t, int64_t, void*,
                                        cudaStream_t);
template void embedding_backward<bf16>(const int32_t*, const bf16*, bf16*, int64_t, int64_t, int64_t, void*,
                                       cudaStream_t);

}  // namespace autosp::kernels::cuda
