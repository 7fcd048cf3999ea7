// AdamW with decoupled weight decay (Loshchilov & Hutter), bias-corrected moments.
//   g' = g * grad_scale  (grad_scale folds in global-norm clipping)
//   m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * ( m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + weight_decay * p )
// step t starts at 1.
#pragma once
#include <cstdint>

namespace autosp::kernels::cpu {

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, float grad_scale);

}  // namespace autosp::kernels::cpu
