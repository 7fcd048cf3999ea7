// Fused LM-head + log-softmax + NLL, chunked over the vocabulary (and over tokens), so the
// N × V logits matrix never exists: peak scratch is row_block × chunk floats.
//   logits = h · wᵀ   (h: [N, D], w: [V, D] in HF [out, in] layout)
//   loss_sum = Σ_{i: t_i != ignore} (lse_i - logits[i, t_i]),  count = #{i: t_i != ignore}
// lse[i] is written for every row (ignored rows too) and is reused by the backward.
// Targets must be ignore_index or in [0, V) (checked). Row blocks are 256 tokens; each tile's
// GEMM is threaded by OpenBLAS, its softmax by OpenMP. Results are deterministic for given
// thread counts: every output sums its tiles in a fixed order (cross_entropy.cc).
#pragma once
#include <cstdint>

namespace autosp::kernels::cpu {

struct CrossEntropyArgs {
  int64_t N = 0, D = 0, V = 0;
  int32_t ignore_index = -1;
  int64_t chunk = 4096;  // vocabulary columns per block
};

void cross_entropy_forward(const CrossEntropyArgs& a, const float* h, const float* w, const int32_t* targets,
                           float* loss_sum, float* count, float* lse);

// dh [N, D] and dw [V, D] are overwritten; dloss is d(objective)/d(loss_sum).
void cross_entropy_backward(const CrossEntropyArgs& a, const float* h, const float* w, const int32_t* targets,
                            const float* lse, float dloss, float* dh, float* dw);

}  // namespace autosp::kernels::cpu
