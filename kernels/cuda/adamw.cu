// AdamW on fp32 master weights and moments (kernels/cpu/adamw.h's formula, bias corrections in
// double on the host), refreshing the bf16 copy the forward reads in the same pass.
#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"

#include <cmath>

namespace autosp::kernels::cuda {

// kernels

__global__ void adamw_kernel(float* p, bf16* p_bf16, const float* g, float* m, float* v, int64_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2,
                             float grad_scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float pi = p[i] - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + weight_decay * p[i]);
    p[i] = pi;
    if (p_bf16) p_bf16[i] = __float2bfloat16_rn(pi);
  }
}

// launchers

void adamw_step(float* p, bf16* p_bf16, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step, float grad_scale, cudaStream_t s) {
  AUTOSP_CHECK(step >= 1) << "AdamW steps count from 1, got " << step;
  if (n == 0) return;
  const float bc1 = float(1.0 - std::pow(double(beta1), double(step)));
  const float bc2 = float(1.0 - std::pow(double(beta2), double(step)));
  const int blocks = int(std::min<int64_t>((n + 255) / 256, 65535 * 8));
  adamw_kernel<<<blocks, 256, 0, s>>>(p, p_bf16, g, m, v, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2,
                                      grad_scale);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace autosp::kernels::cuda
