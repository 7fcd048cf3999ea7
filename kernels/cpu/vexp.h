// exp() that GCC vectorises inside `#pragma omp simd` loops, and the two softmax row loops
// built on it. glibc's expf is a scalar call unless -ffast-math, and in the softmax loops of
// attention and cross-entropy it would cost more than the GEMMs around it. Internal to
// kernels/cpu (not part of any kernel interface).
//
// Cephes-style: x = n·ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial, 2^n put
// into the exponent bits. Relative error < 2e-7 (about 2 ulp) on [-87, 88].
// Inputs below -87 return exactly 0 (true value < 1.7e-38, the denormal range, which no
// softmax weight needs), so exp(-inf) = 0, which the masked-softmax code relies on.
// NaN propagates. Inputs above 88 saturate near 1.65e38 instead of overflowing.
#pragma once
#include <bit>
#include <cstdint>

namespace autosp::kernels::cpu {

inline float vexp(float x) {
  const float xc = x > 88.0f ? 88.0f : (x < -87.0f ? -87.0f : x);  // NaN compares false: stays NaN
  // Round to nearest by the 1.5·2^23 trick (std::floor blocks GCC's vectoriser). Without
  // -ffast-math the compiler may not fold the add and subtract away.
  constexpr float kRound = 12582912.0f;
  const float n = (xc * 1.44269504088896341f + kRound) - kRound;
  // ln2 split in two so n·ln2_hi is exact and r keeps its low bits.
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // n is in [-126, 127] after the clamp, so the biased exponent is a normal one.
  const float two_n = std::bit_cast<float>(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return x < -87.0f ? 0.0f : p * two_n;
}

// Row reductions with explicit lanes. GCC lowers `omp simd reduction(...)` through a 64-entry
// array that it then folds with a scalar loop: on 64-wide softmax rows that fold cost as much
// as the loop itself. Lanes are folded in a fixed order, so results are deterministic.
constexpr int kLanes = 16;

// max(init, x[0..n))
inline float row_max(const float* x, int64_t n, float init) {
  float lane[kLanes];
  for (int l = 0; l < kLanes; ++l) lane[l] = init;
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) lane[l] = x[c + l] > lane[l] ? x[c + l] : lane[l];
  }
  float m = init;
  for (; c < n; ++c) m = x[c] > m ? x[c] : m;
  for (int l = 0; l < kLanes; ++l) m = lane[l] > m ? lane[l] : m;
  return m;
}

// x[c] = exp(x[c] - shift) for c in [0, n), returning the sum of the new values.
inline float exp_shift_sum(float* x, int64_t n, float shift) {
  float lane[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      x[c + l] = vexp(x[c + l] - shift);
      lane[l] += x[c + l];
    }
  }
  float sum = 0.0f;
  for (; c < n; ++c) {
    x[c] = vexp(x[c] - shift);
    sum += x[c];
  }
  for (int l = 0; l < kLanes; ++l) sum += lane[l];
  return sum;
}

}  // namespace autosp::kernels::cpu
