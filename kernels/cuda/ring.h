// The elementwise pieces of ring attention on CUDA (runtime/cuda/ring_attention_cuda.h runs the
// schedule): merging a visiting K/V block's attention result into the running one, and fp32
// accumulation of bf16 gradient parts. Same arithmetic as runtime/ring_attention.cc's CPU
// merge (tests/cuda/test_cuda_ring.cc compares them).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace autosp::kernels::cuda {

using bf16 = __nv_bfloat16;

// o [B, T, H, D] and lse [B, H, T] fp32, the running result; o_blk [B, T, H, D] bf16 and
// lse_blk fp32, one block's (natural-log lse; -inf where its block hid every key). Only rows
// [lo, hi) of each batch (the queries the block's piece covers) are read from the block, and
// lse_blk holds just those, packed: [B, H, hi - lo] (for lo = 0, hi = T the whole lse). The
// other rows saw none of its keys.
// first: (o, lse) := the block's (rows outside [lo, hi): o = 0, lse = -inf). Else (o, lse) :=
// their online-softmax merge: lse_new = logaddexp(lse, lse_blk), o = e^(lse - lse_new)·o +
// e^(lse_blk - lse_new)·o_blk; a side with lse = -inf contributes nothing (and makes no NaN).
void ring_merge(float* o, float* lse, const bf16* o_blk, const float* lse_blk, int64_t B, int64_t T, int64_t H,
                int64_t D, int64_t lo, int64_t hi, bool first, cudaStream_t s);

// acc and part are [B, T, W]: rows [lo, hi) of each batch: acc := part (first) or acc + part,
// in fp32; other rows: acc := 0 (first) or unchanged.
void ring_accumulate(float* acc, const bf16* part, int64_t B, int64_t T, int64_t W, int64_t lo, int64_t hi,
                     bool first, cudaStream_t s);

// x[n] := value.
void ring_fill(float* x, int64_t n, float value, cudaStream_t s);

}  // namespace autosp::kernels::cuda
