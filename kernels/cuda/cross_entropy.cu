// Fused LM head + log-softmax + NLL (kernels.h; the CPU contract is kernels/cpu/cross_entropy.h),
// tiled over row blocks of tokens (R = row_block) and vocabulary chunks (C = chunk), so the N × V
// logits never exist: one R × C tile at a time, in the caller's scratch.
//
// Precision: a tile's logits come out of cuBLASLt in fp32 (bf16 operands, fp32 accumulation,
// fp32 output). Rounding them to bf16 would move each logit by up to 2^-9 of its size —
// 0.03 nats for a logit of 15, straight into the loss — so the tile stays fp32. The forward
// keeps a running (max, Σ exp) per row across chunks in fp32 and picks out the target's
// logit; lse = max + log Σ. The backward recomputes each tile, forms
// dlogits = dloss·(softmax − onehot(target)) (0 for ignored rows), rounded to bf16 because
// cuBLASLt multiplies like types only (values in [−1, 1]: 2^-9 relative error each), then
//   dh[rows]  = Σ_chunks dlogits · w[chunk]   accumulated in an fp32 R × D scratch, rounded once;
//   dw[chunk] = Σ_blocks dlogitsᵀ · h[rows]   written straight to bf16 when there is one row
//               block, else accumulated in an fp32 V × D scratch and rounded once: at long
//               context (128 blocks at 512k tokens) bf16 accumulation would lose the LM head's
//               gradient to round-off.
// The loops run row block outer, so dh needs only an R × D accumulator.
//
// Determinism: every GEMM and kernel runs in a fixed order on one stream, and cuBLASLt is
// deterministic for a fixed algorithm; the loss is summed per row block by a fixed tree
// (double), then the block partials in block order.
//
// Scratch (cross_entropy_scratch_bytes), each part 256-byte aligned, R = min(row_block, N),
// C = min(chunk, V): logits fp32 [R, C]; dlogits bf16 [R, C]; dh accumulator fp32 [R, D];
// running max, running sum and target logit fp32 [R] each; loss/count partials double
// [2·⌈N/R⌉]; with more than one row block, the dw accumulator fp32 [V, D].
#include <math_constants.h>

#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.cuh"
#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda {

using detail::block_sum;

namespace {

// kernels

constexpr int kWarpsPerBlock = 8;  // rows per block of the online softmax, one warp each
constexpr int kRowsDoneThreads = 1024;

// Merges a (max, Σ exp(x − max)) pair into (m, s). Two empty pairs (max −inf) stay empty
// instead of producing exp(−inf − −inf) = NaN.
__device__ __forceinline__ void merge(float& m, float& s, float om, float os) {
  const float mx = fmaxf(m, om);
  if (mx == -CUDART_INF_F) return;
  s = s * expf(m - mx) + os * expf(om - mx);
  m = mx;
}

// One warp per tile row: the chunk's (max, Σ exp) in one pass (each lane rescales its running
// sum when its max grows), merged across the warp by an xor butterfly (a fixed pattern, so the
// result repeats), then folded by lane 0 into the row's running pair. The target's logit is
// captured from whichever chunk holds it; on the first chunk a row whose target is elsewhere
// gets NaN, so a target outside [0, V) surfaces as a NaN loss.
__global__ void ce_online_kernel(const float* logits, int64_t nr, int64_t nc, int64_t c0, const int32_t* targets,
                                 float* run_max, float* run_sum, float* target_logit, bool first) {
  const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = int(threadIdx.x) % 32;
  if (r >= nr) return;  // the whole warp leaves together
  const float* x = logits + r * nc;
  float mx = -CUDART_INF_F, sum = 0.0f;
  for (int64_t c = lane; c < nc; c += 32) {
    const float v = x[c];
    if (v > mx) {
      sum = sum * expf(mx - v) + 1.0f;
      mx = v;
    } else {
      sum += expf(v - mx);
    }
  }
  for (int o = 16; o > 0; o /= 2) {
    const float om = __shfl_xor_sync(0xffffffffu, mx, o), os = __shfl_xor_sync(0xffffffffu, sum, o);
    merge(mx, sum, om, os);
  }
  if (lane != 0) return;
  const int64_t t = targets[r];
  if (t >= c0 && t < c0 + nc)
    target_logit[r] = x[t - c0];
  else if (first)
    target_logit[r] = CUDART_NAN_F;
  if (first) {
    run_max[r] = mx;
    run_sum[r] = sum;
  } else {
    merge(run_max[r], run_sum[r], mx, sum);
  }
}

// One block per row block: lse for every row, and this block's (Σ loss, count) in double.
__global__ void __launch_bounds__(kRowsDoneThreads)
    ce_rows_done_kernel(const float* run_max, const float* run_sum, const float* target_logit, const int32_t* targets,
                        int64_t nr, int32_t ignore_index, float* lse, double* partial) {
  __shared__ double shared[32];
  double loss = 0.0, count = 0.0;
  for (int64_t r = threadIdx.x; r < nr; r += blockDim.x) {
    const float v = run_max[r] + logf(run_sum[r]);
    lse[r] = v;
    if (targets[r] == ignore_index) continue;
    loss += double(v) - double(target_logit[r]);
    count += 1.0;
  }
  loss = block_sum(loss, shared);
  count = block_sum(count, shared);
  if (threadIdx.x == 0) {
    partial[0] = loss;
    partial[1] = count;
  }
}

__global__ void ce_total_kernel(const double* partials, int64_t blocks, float* loss_sum, float* count) {
  double loss = 0.0, n = 0.0;
  for (int64_t b = 0; b < blocks; ++b) {
    loss += partials[2 * b];
    n += partials[2 * b + 1];
  }
  *loss_sum = float(loss);
  *count = float(n);
}

// dlogits = dloss · (exp(logit − lse) − onehot(target)), zero on ignored rows.
__global__ void ce_dlogits_kernel(const float* logits, bf16* dlogits, int64_t nr, int64_t nc, int64_t c0,
                                  const int32_t* targets, const float* lse, int32_t ignore_index, const float* dloss) {
  const float d = *dloss;
  AUTOSP_GRID_STRIDE(i, nr * nc) {
    const int64_t r = i / nc, c = i - r * nc;
    const int32_t t = targets[r];
    float g = 0.0f;
    if (t != ignore_index) {
      g = d * expf(logits[i] - lse[r]);
      if (c0 + c == t) g -= d;
    }
    dlogits[i] = __float2bfloat16_rn(g);
  }
}

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

// Byte offsets of the scratch parts (see the top of the file).
struct ScratchLayout {
  int64_t rows, cols, blocks;  // R, C, ⌈N/R⌉
  size_t logits, dlogits, dh_acc, run_max, run_sum, target_logit, partials, dw_acc, total;
};

ScratchLayout scratch_layout(const CrossEntropyArgs& a) {
  ScratchLayout l{};
  l.rows = std::min(a.row_block, a.N);
  l.cols = std::min(a.chunk, a.V);
  l.blocks = l.rows > 0 ? (a.N + l.rows - 1) / l.rows : 0;
  const size_t R = size_t(l.rows), C = size_t(l.cols);
  size_t off = 0;
  auto take = [&off](size_t bytes) {
    const size_t at = off;
    off += align256(bytes);
    return at;
  };
  l.logits = take(R * C * sizeof(float));
  l.dlogits = take(R * C * sizeof(bf16));
  l.dh_acc = take(R * size_t(a.D) * sizeof(float));
  l.run_max = take(R * sizeof(float));
  l.run_sum = take(R * sizeof(float));
  l.target_logit = take(R * sizeof(float));
  l.partials = take(2 * size_t(l.blocks) * sizeof(double));
  l.dw_acc = take(l.blocks > 1 ? size_t(a.V) * size_t(a.D) * sizeof(float) : 0);
  l.total = off;
  return l;
}

template <class P>
P* at(void* scratch, size_t offset) {
  return reinterpret_cast<P*>(static_cast<char*>(scratch) + offset);
}

void check_args(const CrossEntropyArgs& a) {
  AUTOSP_CHECK(a.N >= 0 && a.D > 0 && a.V > 0 && a.V < (int64_t(1) << 31) && a.chunk > 0 && a.row_block > 0)
      << "cross_entropy: bad sizes N=" << a.N << " D=" << a.D << " V=" << a.V << " chunk=" << a.chunk
      << " row_block=" << a.row_block;
}

}  // namespace

// launchers

size_t cross_entropy_scratch_bytes(const CrossEntropyArgs& a) {
  check_args(a);
  return scratch_layout(a).total;
}

void cross_entropy_forward(GemmContext& ctx, const CrossEntropyArgs& a, const bf16* h, const bf16* w,
                           const int32_t* targets, float* loss_sum, float* count, float* lse, void* scratch,
                           cudaStream_t s) {
  check_args(a);
  if (a.N == 0) {  // no token: an empty sum (0.0f is all zero bits)
    CUDA_CHECK(cudaMemsetAsync(loss_sum, 0, sizeof(float), s));
    CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(float), s));
    return;
  }
  const ScratchLayout l = scratch_layout(a);
  float* logits = at<float>(scratch, l.logits);
  float* run_max = at<float>(scratch, l.run_max);
  float* run_sum = at<float>(scratch, l.run_sum);
  float* target_logit = at<float>(scratch, l.target_logit);
  double* partials = at<double>(scratch, l.partials);
  for (int64_t r0 = 0, block = 0; r0 < a.N; r0 += l.rows, ++block) {
    const int64_t nr = std::min(l.rows, a.N - r0);
    for (int64_t c0 = 0; c0 < a.V; c0 += l.cols) {
      const int64_t nc = std::min(l.cols, a.V - c0);
      matmul(ctx, h + r0 * a.D, w + c0 * a.D, logits, 1, nr, nc, a.D, false, true, false, s);
      ce_online_kernel<<<unsigned((nr + kWarpsPerBlock - 1) / kWarpsPerBlock), 32 * kWarpsPerBlock, 0, s>>>(
          logits, nr, nc, c0, targets + r0, run_max, run_sum, target_logit, c0 == 0);
      CUDA_CHECK(cudaGetLastError());
    }
    ce_rows_done_kernel<<<1, kRowsDoneThreads, 0, s>>>(run_max, run_sum, target_logit, targets + r0, nr, a.ignore_index,
                                                       lse + r0, partials + 2 * block);
    CUDA_CHECK(cudaGetLastError());
  }
  ce_total_kernel<<<1, 1, 0, s>>>(partials, l.blocks, loss_sum, count);
  CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_backward(GemmContext& ctx, const CrossEntropyArgs& a, const bf16* h, const bf16* w,
                            const int32_t* targets, const float* lse, const float* dloss, bf16* dh, bf16* dw,
                            void* scratch, cudaStream_t s) {
  check_args(a);
  if (a.N == 0) {  // no token: every gradient is zero, and the loops below would write nothing
    CUDA_CHECK(cudaMemsetAsync(dw, 0, size_t(a.V * a.D) * sizeof(bf16), s));
    return;
  }
  const ScratchLayout l = scratch_layout(a);
  float* logits = at<float>(scratch, l.logits);
  bf16* dlogits = at<bf16>(scratch, l.dlogits);
  float* dh_acc = at<float>(scratch, l.dh_acc);
  float* dw_acc = l.blocks > 1 ? at<float>(scratch, l.dw_acc) : nullptr;
  for (int64_t r0 = 0; r0 < a.N; r0 += l.rows) {
    const int64_t nr = std::min(l.rows, a.N - r0);
    for (int64_t c0 = 0; c0 < a.V; c0 += l.cols) {
      const int64_t nc = std::min(l.cols, a.V - c0);
      matmul(ctx, h + r0 * a.D, w + c0 * a.D, logits, 1, nr, nc, a.D, false, true, false, s);
      ce_dlogits_kernel<<<detail::grid_for(nr * nc), 256, 0, s>>>(logits, dlogits, nr, nc, c0, targets + r0, lse + r0,
                                                                  a.ignore_index, dloss);
      CUDA_CHECK(cudaGetLastError());
      // dh_acc (+)= dlogits · w[chunk] ;  dw[chunk] (+)= dlogitsᵀ · h[rows]
      matmul(ctx, dlogits, w + c0 * a.D, dh_acc, 1, nr, a.D, nc, false, false, false, s, 1.0f, c0 == 0 ? 0.0f : 1.0f);
      if (dw_acc)
        matmul(ctx, dlogits, h + r0 * a.D, dw_acc + c0 * a.D, 1, nc, a.D, nr, true, false, false, s, 1.0f,
               r0 == 0 ? 0.0f : 1.0f);
      else
        matmul(ctx, dlogits, h + r0 * a.D, dw + c0 * a.D, 1, nc, a.D, nr, true, false, false, s);
    }
    cast_f32_to_bf16(dh_acc, dh + r0 * a.D, nr * a.D, s);
  }
  if (dw_acc) cast_f32_to_bf16(dw_acc, dw, a.V * a.D, s);
}

}  // namespace autosp::kernels::cuda
