// Reductions over a set of axes and their adjoint (broadcast back), plus sum of squares for
// gradient norms. `shape` is the full (un-reduced) shape; reduce[d] marks reduced axes.
// Accumulation is in double so a sum over a million elements stays exact to fp32 round-off.
#pragma once
#include <cstdint>
#include <vector>

namespace autosp::kernels::cpu {

// out (the non-reduced axes, in order) = scale * Σ_{reduced axes} x
void reduce_sum(const float* x, float* out, const std::vector<int64_t>& shape, const std::vector<bool>& reduce,
                float scale);
// out (full shape) = scale * x broadcast along the reduced axes.
void broadcast(const float* x, float* out, const std::vector<int64_t>& shape, const std::vector<bool>& reduce,
               float scale);
double sum_squares(const float* x, int64_t n);

}  // namespace autosp::kernels::cpu
