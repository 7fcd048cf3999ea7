// Binary elementwise ops with suffix broadcasting, and scale.
//
// Loops carry `#pragma omp simd`: GCC 12 at -O2 uses the "very cheap" vectoriser cost
// model, which refuses loops whose trip count is unknown or that need an alias check, so a
// plain loop here stays scalar. `omp simd` asserts there is no loop-carried dependence
// (true for elementwise ops, including in place: out == a) and vectorises regardless.
#include "kernels/cpu/elementwise.h"

#include "core/check.h"

namespace autosp::kernels::cpu {
namespace {

// Below this many elements, waking the thread team costs more than the loop.
constexpr int64_t kParallelMin = 1 << 15;

template <class F>
void binary_impl(F f, const float* a, const float* b, float* out, int64_t na, int64_t nb) {
  if (nb == 1) {  // scalar: hoist it, so the loop is a single stream
    const float s = b[0];
#pragma omp parallel for simd schedule(static) if (na >= kParallelMin)
    for (int64_t i = 0; i < na; ++i) out[i] = f(a[i], s);
    return;
  }
  // a viewed as [rows, nb]: b applies to every row. Parallel over rows, vector within one.
  const int64_t rows = na / nb;
#pragma omp parallel for schedule(static) if (na >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = a + r * nb;
    float* orow = out + r * nb;
#pragma omp simd
    for (int64_t j = 0; j < nb; ++j) orow[j] = f(ar[j], b[j]);
  }
}

}  // namespace

void binary(BinaryOp op, const float* a, const float* b, float* out, int64_t na, int64_t nb) {
  AUTOSP_CHECK(nb > 0 && na >= 0 && na % nb == 0) << "binary: nb = " << nb << " must divide na = " << na;
  // The switch sits outside the loop so each instantiation's inner loop is branch-free.
  switch (op) {
    case BinaryOp::add: return binary_impl([](float x, float y) { return x + y; }, a, b, out, na, nb);
    case BinaryOp::sub: return binary_impl([](float x, float y) { return x - y; }, a, b, out, na, nb);
    case BinaryOp::mul: return binary_impl([](float x, float y) { return x * y; }, a, b, out, na, nb);
    case BinaryOp::div: return binary_impl([](float x, float y) { return x / y; }, a, b, out, na, nb);
  }
  AUTOSP_CHECK(false) << "binary: unknown op " << static_cast<int>(op);
}

void scale(const float* x, float* out, int64_t n, float s) {
  AUTOSP_CHECK(n >= 0) << "scale: n = " << n;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * s;
}

}  // namespace autosp::kernels::cpu
