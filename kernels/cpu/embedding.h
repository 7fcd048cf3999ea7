// Token embedding lookup and its backward (scatter-add into the table).
#pragma once
#include <cstdint>

namespace autosp::kernels::cpu {

// y[i, :] = w[tokens[i], :]
void embedding_forward(const int32_t* tokens, const float* w, float* y, int64_t n_tokens, int64_t dim);
// dw (vocab × dim) is overwritten: dw[v] = Σ_{i: tokens[i]==v} dy[i]. Deterministic.
void embedding_backward(const int32_t* tokens, const float* dy, float* dw, int64_t n_tokens, int64_t vocab,
                        int64_t dim);

}  // namespace autosp::kernels::cpu
