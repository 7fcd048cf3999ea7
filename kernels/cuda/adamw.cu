// AdamW on fp32 master weights and moments (kernels/cpu/adamw.h's formula, bias corrections in
// double on the host), refreshing the bf16 copy the forward reads in the same pass.
//
// The per-element arithmetic is the CPU kernel's operation for operation: the moments are
// scaled by the reciprocals 1/(1 − β^t), formed in double and rounded once to fp32, and
// (1 − β) is rounded once on the host, so the two differ only where either compiler
// contracts a multiply-add (nvcc does by default).
#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"

#include <cmath>

namespace autosp::kernels::cuda {

// kernels

__global__ void adamw_kernel(float* p, bf16* p_bf16, const float* g, float* m, float* v, int64_t n, float lr,
                             float beta1, float beta2, float one_m_b1, float one_m_b2, float eps, float weight_decay,
                             float inv_bc1, float inv_bc2, float grad_scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i] * grad_scale;
    const float mi = beta1 * m[i] + one_m_b1 * gi;
    const float vi = beta2 * v[i] + one_m_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float pi = p[i] - lr * ((mi * inv_bc1) / (sqrtf(vi * inv_bc2) + eps) + weight_decay * p[i]);
    p[i] = pi;
    if (p_bf16) p_bf16[i] = __float2bfloat16_rn(pi);
  }
}

// launchers

void adamw_step(float* p, bf16* p_bf16, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step, float grad_scale, cudaStream_t s) {
  AUTOSP_CHECK(n >= 0) << "adamw_step: n = " << n;
  AUTOSP_CHECK(step >= 1) << "AdamW steps count from 1, got " << step;
  AUTOSP_CHECK(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f)
      << "adamw_step: beta1 = " << beta1 << ", beta2 = " << beta2 << " must lie in [0, 1)";
  if (n == 0) return;
  const double t = double(step);
  const float inv_bc1 = float(1.0 / (1.0 - std::pow(double(beta1), t)));
  const float inv_bc2 = float(1.0 / (1.0 - std::pow(double(beta2), t)));
  const int blocks = int(std::min<int64_t>((n + 255) / 256, 65535 * 8));
  adamw_kernel<<<blocks, 256, 0, s>>>(p, p_bf16, g, m, v, n, lr, beta1, beta2, 1.0f - beta1, 1.0f - beta2, eps,
                                      weight_decay, inv_bc1, inv_bc2, grad_scale);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace autosp::kernels::cuda
