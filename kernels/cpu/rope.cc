// Rotary position embedding (Hugging Face Llama "rotate_half" layout).
//
// Angles are computed in double. Positions are global and reach 1M+ in long-context
// training; in fp32, pos * inv_freq at pos = 1e6 is off by up to ~0.06 rad (the rounding of inv_freq
// and of the product, each ~6e-8 relative, times an angle of up to 1e6), which grows with position and would make the rotation — and the
// SP-vs-single-device check — depend on how large a position is. cos/sin are evaluated once
// per position for the D/2 frequencies (AngleTable below) and reused across heads, rows and
// calls.
// Note: Hugging Face computes the angle in fp32, so at very large positions this kernel is
// the more accurate of the two and differs from a PyTorch reference by that fp32 error.
#include "kernels/cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "core/check.h"

namespace autosp::kernels::cpu {
namespace {
constexpr int64_t kParallelMin = 1 << 15;  // elements before threads pay off

// cos/sin of pos · inv_freq[i] for one (theta, D), by position: computed once per position and
// reused by every later call on this thread (each rank's thread keeps its own), so the
// double-precision trig is paid per distinct position, not per row, head count and step. The
// inverse rotation uses the same table with sin negated (sin is odd, cos even: the same bits
// as computing the negated angle). At most 1 MiB a table; positions past it are computed per
// row, exactly as the table would hold them.
class AngleTable {
 public:
  AngleTable(float theta, int64_t D) : theta_(theta), half_(D / 2), inv_freq_(size_t(half_)) {
    for (int64_t i = 0; i < half_; ++i)
      inv_freq_[size_t(i)] = std::pow(double(theta), -2.0 * double(i) / double(D));
  }
  bool is(float theta, int64_t D) const { return theta_ == theta && half_ == D / 2; }
  // Fills the table for positions below `end`, as far as its cap allows.
  void cover(int64_t end) {
    end = std::min(end, (int64_t(1) << 20) / (8 * half_));
    if (end <= covered_) return;
    cos_.resize(size_t(end * half_));
    sin_.resize(size_t(end * half_));
    for (int64_t p = covered_; p < end; ++p) fill(p, cos_.data() + p * half_, sin_.data() + p * half_);
    covered_ = end;
  }
  // pos's cos and sin: the table's, or c and s filled now.
  std::pair<const float*, const float*> at(int64_t pos, float* c, float* s) const {
    if (pos >= 0 && pos < covered_) return {cos_.data() + pos * half_, sin_.data() + pos * half_};
    fill(pos, c, s);
    return {c, s};
  }

 private:
  void fill(int64_t pos, float* c, float* s) const {
    for (int64_t i = 0; i < half_; ++i) {
      const double a = double(pos) * inv_freq_[size_t(i)];
      c[i] = static_cast<float>(std::cos(a));
      s[i] = static_cast<float>(std::sin(a));
    }
  }
  float theta_;
  int64_t half_;
  std::vector<double> inv_freq_;
  int64_t covered_ = 0;
  std::vector<float> cos_, sin_;
};

AngleTable& angles(float theta, int64_t D) {
  thread_local std::vector<std::unique_ptr<AngleTable>> tables;
  for (auto& t : tables)
    if (t->is(theta, D)) return *t;
  tables.push_back(std::make_unique<AngleTable>(theta, D));
  return *tables.back();
}

}  // namespace

// y may alias x: each (i, i + D/2) pair is read before it is written, and pairs are disjoint.
void rope(const float* x, const int32_t* pos, float* y, int64_t B, int64_t T, int64_t H, int64_t D, float theta,
          bool inverse) {
  AUTOSP_CHECK(B >= 0 && T >= 0 && H >= 0 && D > 0 && D % 2 == 0)
      << "rope: B = " << B << ", T = " << T << ", H = " << H << ", D = " << D << " (D must be even)";
  AUTOSP_CHECK(theta > 0.0f) << "rope: theta = " << theta;
  const int64_t half = D / 2;
  const int64_t rows = B * T;
  AngleTable& table = angles(theta, D);
  int64_t end = 0;
  for (int64_t bt = 0; bt < rows; ++bt) end = std::max<int64_t>(end, int64_t(pos[bt]) + 1);
  table.cover(end);  // before the parallel region, which only reads the table
  const float sign = inverse ? -1.0f : 1.0f;

#pragma omp parallel if (rows * H * D >= kParallelMin)
  {
    std::vector<float> cos_t(half), sin_t(half);  // per thread: positions past the table
#pragma omp for schedule(static)
    for (int64_t bt = 0; bt < rows; ++bt) {
      const auto [c, s] = table.at(pos[bt], cos_t.data(), sin_t.data());
      for (int64_t h = 0; h < H; ++h) {
        const float* xh = x + (bt * H + h) * D;
        float* yh = y + (bt * H + h) * D;
#pragma omp simd
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = xh[i];
          const float x2 = xh[i + half];
          const float si = sign * s[i];
          yh[i] = x1 * c[i] - x2 * si;
          yh[i + half] = x2 * c[i] + x1 * si;
        }
      }
    }
  }
}

}  // namespace autosp::kernels::cpu
