// Packed documents -> cuDNN's ragged attention tables, and the statistics' two layouts
// (attention_documents.h).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <climits>

#include "core/check.h"
#include "kernels/cuda/attention_documents.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.cuh"

namespace autosp::kernels::cuda {

namespace {

constexpr int kScanThreads = 1024;

struct Max {
  __device__ int operator()(int x, int y) const { return max(x, y); }
};

// A run's place in the required order: ids ascending, negative ids (padding) after all of them.
__device__ int64_t order_key(int32_t id) { return id < 0 ? int64_t(INT_MAX) + 1 : int64_t(id); }

// Each thread takes a contiguous chunk of the B·T tokens: counts the runs that start in it,
// the block scans the counts into each chunk's first index, and each thread writes its starts.
// A run starts at a row's first token or where the id changes.
__global__ void document_scan_kernel(const int32_t* seg, int64_t B, int64_t T, int32_t* starts, DocumentScan* scan) {
  using Scan = cub::BlockScan<int, kScanThreads>;
  using Reduce = cub::BlockReduce<int, kScanThreads>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename Reduce::TempStorage reduce;
  } tmp;
  __shared__ int total;
  const int64_t n = B * T, chunk = (n + kScanThreads - 1) / kScanThreads;
  const int64_t lo = min(n, int64_t(threadIdx.x) * chunk), hi = min(n, lo + chunk);
  auto starts_run = [&](int64_t g) { return g % T == 0 || seg[g] != seg[g - 1]; };

  int mine = 0, ordered = 1;
  for (int64_t g = lo; g < hi; ++g)
    if (starts_run(g)) {
      ++mine;
      if (g % T != 0 && order_key(seg[g]) <= order_key(seg[g - 1])) ordered = 0;
    }
  int first = 0;
  Scan(tmp.scan).ExclusiveSum(mine, first);
  if (threadIdx.x == kScanThreads - 1) total = first + mine;
  for (int64_t g = lo, k = first; g < hi; ++g)
    if (starts_run(g)) starts[k++] = int32_t(g);
  __syncthreads();  // every start written, `total` set, the scan's storage free again
  if (threadIdx.x == 0) starts[total] = int32_t(n);
  __syncthreads();
  int longest = 0;
  for (int k = first; k < first + mine; ++k) longest = max(longest, (k + 1 < total ? starts[k + 1] : int32_t(n)) - starts[k]);
  const int max_len = Reduce(tmp.reduce).Reduce(longest, Max());
  ordered = __syncthreads_and(ordered);
  if (threadIdx.x == 0) {
    scan->count = total;
    scan->max_len = max_len;
    scan->ordered = ordered;
  }
}

__global__ void ragged_tables_kernel(const int32_t* starts, int64_t count, int64_t slots, int64_t H, int64_t Hkv,
                                     int64_t D, int32_t* seq_len, int64_t* q_offset, int64_t* kv_offset,
                                     int64_t* stats_offset) {
  AUTOSP_GRID_STRIDE(i, slots + 1) {
    // Slots past the documents are empty sequences at the end of the tokens.
    const int64_t first = starts[min(i, count)];
    if (i < slots) seq_len[i] = i < count ? starts[i + 1] - starts[i] : 0;
    q_offset[i] = first * H * D;
    kv_offset[i] = first * Hkv * D;
    stats_offset[i] = first * H;
  }
}

// The first row in [lo, hi) of seg (an ordered window) whose id's order key is >= key (upper:
// > key).
__device__ int64_t search(const int32_t* seg, int64_t lo, int64_t hi, int64_t key, bool upper) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2, k = order_key(seg[mid]);
    if (k < key || (upper && k == key))
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

__global__ void visiting_tables_kernel(const int32_t* q_seg, const int32_t* starts, int64_t count,
                                       const int32_t* k_seg, int64_t B, int64_t Tq, int64_t Tk, int64_t q0, int64_t q1,
                                       int64_t k0, int64_t k1, int64_t slots, int64_t H, int64_t Hkv, int64_t D,
                                       int32_t* seq_q, int32_t* seq_kv, int64_t* q_offset, int64_t* kv_offset,
                                       int64_t* stats_offset, int32_t* unordered) {
  const int64_t nq = q1 - q0, nk = k1 - k0;
  AUTOSP_GRID_STRIDE(i, slots + 1) {
    // The window rows [a0, a1) of the query document, the key rows [c0, c1) of its id; past
    // the documents, empty sequences at the windows' end.
    int64_t b = B - 1, a0 = q1, a1 = q1, c0 = k1, c1 = k1;
    if (i < count) {
      const int64_t g = starts[i], t = g % Tq;  // a document never crosses a row
      b = g / Tq;
      a0 = min(max(t, q0), q1);
      a1 = min(max(t + (starts[i + 1] - g), q0), q1);
      const int32_t* row = k_seg + b * Tk;
      const int32_t id = q_seg[g];
      c0 = search(row, k0, k1, order_key(id), false);
      c1 = search(row, c0, k1, order_key(id), true);
      // Every negative id sorts alike (padding): the run found must be this very id.
      if (a1 == a0 || c1 == c0 || row[c0] != id) a1 = a0, c1 = c0;
    }
    if (i < slots) {
      seq_q[i] = int32_t(a1 - a0);
      seq_kv[i] = int32_t(c1 - c0);
    }
    q_offset[i] = (b * Tq + a0 - q0) * H * D;
    kv_offset[i] = (b * Tk + c0 - k0) * Hkv * D;
    stats_offset[i] = (b * nq + a0 - q0) * H;
  }
  AUTOSP_GRID_STRIDE(j, B * nk) {  // the key window's order: document_scan's rule
    const int64_t t = k0 + j % nk, g = (j / nk) * Tk + t;
    if (t > k0 && k_seg[g] != k_seg[g - 1] && order_key(k_seg[g]) <= order_key(k_seg[g - 1])) *unordered = 1;
  }
}

__global__ void lse_to_token_major_kernel(const float* lse, float* stats, int64_t H, int64_t T, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {  // i walks stats [B·T, H]
    const int64_t h = i % H, bt = i / H, b = bt / T, t = bt % T;
    stats[i] = lse[(b * H + h) * T + t];
  }
}

__global__ void lse_from_token_major_kernel(const float* stats, float* lse, int64_t H, int64_t T, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {  // i walks lse [B, H, T]
    const int64_t t = i % T, bh = i / T, b = bh / H, h = bh % H;
    lse[i] = stats[(b * T + t) * H + h];
  }
}

}  // namespace

void document_scan(const int32_t* seg, int64_t B, int64_t T, int32_t* starts, DocumentScan* scan, cudaStream_t s) {
  document_scan_kernel<<<1, kScanThreads, 0, s>>>(seg, B, T, starts, scan);
  CUDA_CHECK(cudaGetLastError());
}

void ragged_tables(const int32_t* starts, int64_t count, int64_t slots, int64_t H, int64_t Hkv, int64_t D,
                   int32_t* seq_len, int64_t* q_offset, int64_t* kv_offset, int64_t* stats_offset, cudaStream_t s) {
  ragged_tables_kernel<<<detail::grid_for(slots + 1), 256, 0, s>>>(starts, count, slots, H, Hkv, D, seq_len, q_offset,
                                                                    kv_offset, stats_offset);
  CUDA_CHECK(cudaGetLastError());
}

void visiting_tables(const int32_t* q_seg, const int32_t* starts, int64_t count, const int32_t* k_seg, int64_t B,
                     int64_t Tq, int64_t Tk, int64_t q0, int64_t q1, int64_t k0, int64_t k1, int64_t slots, int64_t H,
                     int64_t Hkv, int64_t D, int32_t* seq_q, int32_t* seq_kv, int64_t* q_offset, int64_t* kv_offset,
                     int64_t* stats_offset, int32_t* unordered, cudaStream_t s) {
  AUTOSP_CHECK(count <= slots && 0 <= q0 && q0 <= q1 && q1 <= Tq && 0 <= k0 && k0 <= k1 && k1 <= Tk)
      << "visiting_tables: " << count << " documents in " << slots << " slots, windows [" << q0 << ", " << q1
      << ") of " << Tq << " rows and [" << k0 << ", " << k1 << ") of " << Tk;
  const int64_t n = std::max(slots + 1, B * (k1 - k0));
  visiting_tables_kernel<<<detail::grid_for(n), 256, 0, s>>>(q_seg, starts, count, k_seg, B, Tq, Tk, q0, q1, k0, k1,
                                                              slots, H, Hkv, D, seq_q, seq_kv, q_offset, kv_offset,
                                                              stats_offset, unordered);
  CUDA_CHECK(cudaGetLastError());
}

void lse_to_token_major(const float* lse, float* stats, int64_t B, int64_t H, int64_t T, cudaStream_t s) {
  const int64_t n = B * H * T;
  lse_to_token_major_kernel<<<detail::grid_for(n), 256, 0, s>>>(lse, stats, H, T, n);
  CUDA_CHECK(cudaGetLastError());
}

void lse_from_token_major(const float* stats, float* lse, int64_t B, int64_t H, int64_t T, cudaStream_t s) {
  const int64_t n = B * H * T;
  lse_from_token_major_kernel<<<detail::grid_for(n), 256, 0, s>>>(stats, lse, H, T, n);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace autosp::kernels::cuda
