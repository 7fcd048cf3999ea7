// Pointwise activations and their backward. gelu is the tanh approximation (GPT-2).
// swiglu(gate, up) = silu(gate) * up (Llama MLP).
#pragma once
#include <cstdint>

namespace autosp::kernels::cpu {

void silu_forward(const float* x, float* y, int64_t n);
void silu_backward(const float* x, const float* dy, float* dx, int64_t n);
void gelu_forward(const float* x, float* y, int64_t n);
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n);
void swiglu_forward(const float* gate, const float* up, float* y, int64_t n);
void swiglu_backward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n);

}  // namespace autosp::kernels::cpu
