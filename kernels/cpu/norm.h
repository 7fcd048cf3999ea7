// RMSNorm and LayerNorm over the last dimension (rows × dim). The backward recomputes the
// row statistics instead of storing them: one extra pass over x is cheaper than a buffer.
// dg/db are overwritten (summed over rows); reductions are per-thread partials combined in a
// fixed order, so results are identical run to run for the same thread count.
#pragma once
#include <cstdint>

namespace autosp::kernels::cpu {

void rms_norm_forward(const float* x, const float* g, float* y, int64_t rows, int64_t dim, float eps);
void rms_norm_backward(const float* x, const float* g, const float* dy, float* dx, float* dg, int64_t rows,
                       int64_t dim, float eps);
void layer_norm_forward(const float* x, const float* g, const float* b, float* y, int64_t rows, int64_t dim,
                        float eps);
void layer_norm_backward(const float* x, const float* g, const float* dy, float* dx, float* dg, float* db,
                         int64_t rows, int64_t dim, float eps);

}  // namespace autosp::kernels::cpu
