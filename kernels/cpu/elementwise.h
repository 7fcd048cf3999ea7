// Binary elementwise ops with suffix broadcasting: b has nb elements, nb divides na, and
// b is repeated over a's leading dimensions (a bias [E] over [B, T, E], a scalar over all).
#pragma once
#include <cstdint>

namespace autosp::kernels::cpu {

enum class BinaryOp { add, sub, mul, div };

void binary(BinaryOp op, const float* a, const float* b, float* out, int64_t na, int64_t nb);
void scale(const float* x, float* out, int64_t n, float s);

}  // namespace autosp::kernels::cpu
