// Rotary position embedding, HF rotate_half: element i pairs with i + D/2 and rotates by
// pos · theta^(-2i/D). The angle is formed and reduced mod 2π in double, as the CPU kernel
// does, because pos · inv_freq in fp32 is off by ~0.06 rad near a million positions.
#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.cuh"
#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda {

using detail::from_f32;
using detail::to_f32;

namespace {

// kernels

// One thread per (b, t, h, pair): both elements of a pair are read before either is written,
// and pairs are disjoint, so y may alias x.
template <class T>
__global__ void rope_kernel(const T* x, const int32_t* pos, T* y, int64_t rows, int64_t H, int64_t D, double log_theta,
                            float sign) {
  const int64_t half = D / 2;
  AUTOSP_GRID_STRIDE(t, rows * H * half) {
    const int64_t i = t % half, bth = t / half;  // pair index, and which (b, t, h) row
    const int64_t bt = bth / H;
    const double inv_freq = exp(-2.0 * double(i) / double(D) * log_theta);
    const double angle = fmod(double(pos[bt]) * inv_freq, 6.283185307179586);
    float sn, cs;
    sincosf(float(angle) * sign, &sn, &cs);
    const T* xr = x + bth * D;
    const float a = to_f32(xr[i]), b = to_f32(xr[i + half]);
    y[bth * D + i] = from_f32<T>(a * cs - b * sn);
    y[bth * D + i + half] = from_f32<T>(b * cs + a * sn);
  }
}

}  // namespace

// launchers

template <class T>
void rope(const T* x, const int32_t* pos, T* y, int64_t B, int64_t seq, int64_t H, int64_t D, float theta, bool inverse,
          cudaStream_t s) {
  AUTOSP_CHECK(B >= 0 && seq >= 0 && H >= 0 && D > 0 && D % 2 == 0)
      << "rope: B = " << B << ", seq = " << seq << ", H = " << H << ", D = " << D << " (D must be even)";
  AUTOSP_CHECK(theta > 0.0f) << "rope: theta = " << theta;
  const int64_t pairs = B * seq * H * (D / 2);
  if (pairs == 0) return;
  rope_kernel<<<detail::grid_for(pairs), 256, 0, s>>>(x, pos, y, B * seq, H, D, log(double(theta)),
                                                      inverse ? -1.0f : 1.0f);
  CUDA_CHECK(cudaGetLastError());
}

template void rope<float>(const float*, const int32_t*, float*, int64_t, int64_t, int64_t, int64_t, float, bool,
                          cudaStream_t);
template void rope<bf16>(const bf16*, const int32_t*, bf16*, int64_t, int64_t, int64_t, int64_t, float, bool,
                         cudaStream_t);

}  // namespace autosp::kernels::cuda
