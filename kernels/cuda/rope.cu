// Rotary position embedding, HF rotate_half: element i pairs with i + D/2 and rotates by
// pos · theta^(-2i/D). The angle is formed and reduced mod 2π in double, as the CPU kernel
// does, because pos · inv_freq in fp32 is off by ~0.06 rad near a million positions.
#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda {

// kernels

__global__ void rope_kernel(const bf16* x, const int32_t* pos, bf16* y, int64_t B, int64_t T, int64_t H,
                            int64_t D, double log_theta, float sign) {
  const int64_t half = D / 2;
  const int64_t n = B * T * H * half;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = t % half, bth = t / half;  // pair index, and which (b, t, h) row
    const int64_t bt = bth / H;
    const double inv_freq = exp(-2.0 * double(i) / double(D) * log_theta);
    const double angle = fmod(double(pos[bt]) * inv_freq, 6.283185307179586);
    float sn, cs;
    sincosf(float(angle) * sign, &sn, &cs);
    const bf16* xr = x + bth * D;
    const float a = __bfloat162float(xr[i]), b = __bfloat162float(xr[i + half]);
    y[bth * D + i] = __float2bfloat16_rn(a * cs - b * sn);
    y[bth * D + i + half] = __float2bfloat16_rn(b * cs + a * sn);
  }
}

// launchers

void rope(const bf16* x, const int32_t* pos, bf16* y, int64_t B, int64_t T, int64_t H, int64_t D, float theta,
          bool inverse, cudaStream_t s) {
  AUTOSP_CHECK(D % 2 == 0 && theta > 0) << "rope needs an even head_dim, got " << D;
  const int64_t pairs = B * T * H * (D / 2);
  if (pairs == 0) return;
  const int blocks = int(std::min<int64_t>((pairs + 255) / 256, 65535 * 8));
  rope_kernel<<<blocks, 256, 0, s>>>(x, pos, y, B, T, H, D, log(double(theta)), inverse ? -1.0f : 1.0f);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace autosp::kernels::cuda
