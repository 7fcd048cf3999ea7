// AdamW step over a flat parameter shard (ZeRO shards call it on their slice).
//
// The bias corrections 1 - b^t are computed in double: for b2 = 0.999 at t = 1,
// 1 - b2 = 1e-3 loses ~4 bits to cancellation in fp32, and b^t itself drifts when
// exponentiated in fp32 over many steps. Their reciprocals are then rounded once to fp32,
// and the per-element update is fp32, like the CUDA kernel, so the two can agree to
// round-off. The loop is memory-bound (7 streams of fp32 per element) and threaded;
// elements are independent, so the result does not depend on threads. It vectorises only
// under -fno-math-errno: otherwise std::sqrt keeps a branch to set errno on negative input.
#include "kernels/cpu/adamw.h"

#include <cmath>

#include "core/check.h"

namespace autosp::kernels::cpu {
namespace {
constexpr int64_t kParallelMin = 1 << 15;  // elements before threads pay off
}  // namespace

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, float grad_scale) {
  AUTOSP_CHECK(n >= 0) << "adamw_step: n = " << n;
  AUTOSP_CHECK(step >= 1) << "adamw_step: step = " << step << " (steps count from 1)";
  AUTOSP_CHECK(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f)
      << "adamw_step: beta1 = " << beta1 << ", beta2 = " << beta2 << " must lie in [0, 1)";
  const double t = static_cast<double>(step);
  const float inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta1), t)));
  const float inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta2), t)));
  const float one_m_b1 = 1.0f - beta1;
  const float one_m_b2 = 1.0f - beta2;
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * grad_scale;
    const float mi = beta1 * m[i] + one_m_b1 * gi;
    const float vi = beta2 * v[i] + one_m_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float update = (mi * inv_bc1) / (std::sqrt(vi * inv_bc2) + eps) + weight_decay * p[i];
    p[i] -= lr * update;
  }
}

}  // namespace autosp::kernels::cpu
