// silu, gelu (tanh approximation, as GPT-2) and swiglu, forward and backward.
//
// The math is fp32 throughout: each element is independent, so there is no accumulation
// for double to protect. exp is vexp (vexp.h), not std::exp: glibc's expf and tanhf are
// scalar calls that stop these loops from vectorising, and they would dominate an MLP's
// activation cost. tanh is written through exp as 1 - 2 / (e^{2u} + 1), whose absolute error
// (~1e-7) is what gelu needs: t enters as 1 + t, never divided by. Saturation is benign:
// vexp clamps instead of overflowing, so sigmoid → 0 or 1 and tanh → ±1, never NaN.
// `omp simd` because GCC 12 at -O2 leaves plain loops of unknown length scalar.
#include "kernels/cpu/activation.h"

#include "core/check.h"
#include "kernels/cpu/vexp.h"

namespace autosp::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 14;  // transcendental per element: worth threads earlier

// sqrt(2/pi) and the cubic coefficient of the GPT-2 tanh approximation.
constexpr float kGeluC = 0.7978845608028654f;
constexpr float kGeluA = 0.044715f;

inline float sigmoid(float x) { return 1.0f / (1.0f + vexp(-x)); }
inline float tanh_fast(float u) { return 1.0f - 2.0f / (vexp(2.0f * u) + 1.0f); }

}  // namespace

void silu_forward(const float* x, float* y, int64_t n) {
  AUTOSP_CHECK(n >= 0) << "silu_forward: n = " << n;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid(x[i]);
}

// d/dx [x s(x)] = s + x s (1 - s) = s (1 + x (1 - s)).
void silu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  AUTOSP_CHECK(n >= 0) << "silu_backward: n = " << n;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float s = sigmoid(x[i]);
    dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
  }
}

void gelu_forward(const float* x, float* y, int64_t n) {
  AUTOSP_CHECK(n >= 0) << "gelu_forward: n = " << n;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float t = tanh_fast(kGeluC * (v + kGeluA * v * v * v));
    y[i] = 0.5f * v * (1.0f + t);
  }
}

// With u = c (x + a x^3), t = tanh(u): d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2).
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  AUTOSP_CHECK(n >= 0) << "gelu_backward: n = " << n;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float t = tanh_fast(kGeluC * (v + kGeluA * v * v * v));
    const float du = kGeluC * (1.0f + 3.0f * kGeluA * v * v);
    dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
  }
}

void swiglu_forward(const float* gate, const float* up, float* y, int64_t n) {
  AUTOSP_CHECK(n >= 0) << "swiglu_forward: n = " << n;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

// y = silu(g) u: dg = dy u silu'(g), du = dy silu(g). Both read before either is written, so
// dgate/dup may alias gate/up.
void swiglu_backward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n) {
  AUTOSP_CHECK(n >= 0) << "swiglu_backward: n = " << n;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float u = up[i];
    const float s = sigmoid(g);
    dgate[i] = dy[i] * u * s * (1.0f + g * (1.0f - s));
    dup[i] = dy[i] * g * s;
  }
}

}  // namespace autosp::kernels::cpu
