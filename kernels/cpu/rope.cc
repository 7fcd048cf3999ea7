// Rotary position embedding (Hugging Face Llama "rotate_half" layout).
//
// Angles are computed in double. Positions are global and reach 1M+ in long-context
// training; in fp32, pos * inv_freq at pos = 1e6 is off by up to ~0.06 rad (the rounding of inv_freq
// and of the product, each ~6e-8 relative, times an angle of up to 1e6), which grows with position and would make the rotation — and the
// SP-vs-single-device check — depend on how large a position is. cos/sin are evaluated once
// per (b, t) for the D/2 frequencies and reused across the H heads, so the double work is
// H times smaller than the rotation itself.
// Note: Hugging Face computes the angle in fp32, so at very large positions this kernel is
// the more accurate of the two and differs from a PyTorch reference by that fp32 error.
#include "kernels/cpu/rope.h"

#include <cmath>
#include <vector>

#include "core/check.h"

namespace autosp::kernels::cpu {
namespace {
constexpr int64_t kParallelMin = 1 << 15;  // elements before threads pay off
}  // namespace

// y may alias x: each (i, i + D/2) pair is read before it is written, and pairs are disjoint.
void rope(const float* x, const int32_t* pos, float* y, int64_t B, int64_t T, int64_t H, int64_t D, float theta,
          bool inverse) {
  AUTOSP_CHECK(B >= 0 && T >= 0 && H >= 0 && D > 0 && D % 2 == 0)
      << "rope: B = " << B << ", T = " << T << ", H = " << H << ", D = " << D << " (D must be even)";
  AUTOSP_CHECK(theta > 0.0f) << "rope: theta = " << theta;
  const int64_t half = D / 2;
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(D));
  const double sign = inverse ? -1.0 : 1.0;
  const int64_t rows = B * T;

#pragma omp parallel if (rows * H * D >= kParallelMin)
  {
    std::vector<float> cos_t(half), sin_t(half);  // per thread, reused across rows
#pragma omp for schedule(static)
    for (int64_t bt = 0; bt < rows; ++bt) {
      const double p = static_cast<double>(pos[bt]);
      for (int64_t i = 0; i < half; ++i) {
        const double a = sign * p * inv_freq[i];
        cos_t[i] = static_cast<float>(std::cos(a));
        sin_t[i] = static_cast<float>(std::sin(a));
      }
      const float* c = cos_t.data();
      const float* s = sin_t.data();
      for (int64_t h = 0; h < H; ++h) {
        const float* xh = x + (bt * H + h) * D;
        float* yh = y + (bt * H + h) * D;
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = xh[i];
          const float x2 = xh[i + half];
          yh[i] = x1 * c[i] - x2 * s[i];
          yh[i + half] = x2 * c[i] + x1 * s[i];
        }
      }
    }
  }
}

}  // namespace autosp::kernels::cpu
