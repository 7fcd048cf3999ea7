// SiLU, GELU (the tanh approximation with GPT-2's constants, as kernels/cpu/activation.cc) and
// SwiGLU (silu(gate) · up), forward and backward, elementwise in fp32 for fp32 and bf16.
// expf and tanhf rather than the __expf intrinsic: these kernels are memory-bound, and the
// accurate functions keep the fp32 instantiation within ~1e-6 of the CPU kernel.
#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.cuh"
#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda {

using detail::from_f32;
using detail::to_f32;

namespace {

// kernels

// sqrt(2/pi) and the cubic coefficient of the GPT-2 tanh approximation.
constexpr float kGeluC = 0.7978845608028654f;
constexpr float kGeluA = 0.044715f;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

template <class T>
__global__ void silu_forward_kernel(const T* x, T* y, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {
    const float v = to_f32(x[i]);
    y[i] = from_f32<T>(v * sigmoid(v));
  }
}

// d silu(x)/dx = σ(x)·(1 + x·(1 − σ(x)))
template <class T>
__global__ void silu_backward_kernel(const T* x, const T* dy, T* dx, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {
    const float v = to_f32(x[i]), s = sigmoid(v);
    dx[i] = from_f32<T>(to_f32(dy[i]) * s * (1.0f + v * (1.0f - s)));
  }
}

template <class T>
__global__ void gelu_forward_kernel(const T* x, T* y, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {
    const float v = to_f32(x[i]);
    const float t = tanhf(kGeluC * (v + kGeluA * v * v * v));
    y[i] = from_f32<T>(0.5f * v * (1.0f + t));
  }
}

// With u = c (x + a x³), t = tanh(u): d/dx = 0.5 (1 + t) + 0.5 x (1 − t²) c (1 + 3 a x²).
template <class T>
__global__ void gelu_backward_kernel(const T* x, const T* dy, T* dx, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {
    const float v = to_f32(x[i]);
    const float t = tanhf(kGeluC * (v + kGeluA * v * v * v));
    const float du = kGeluC * (1.0f + 3.0f * kGeluA * v * v);
    dx[i] = from_f32<T>(to_f32(dy[i]) * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du));
  }
}

template <class T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* y, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {
    const float g = to_f32(gate[i]);
    y[i] = from_f32<T>(g * sigmoid(g) * to_f32(up[i]));
  }
}

// Both inputs are read before either gradient is written, so dgate/dup may alias gate/up.
template <class T>
__global__ void swiglu_backward_kernel(const T* gate, const T* up, const T* dy, T* dgate, T* dup, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) {
    const float g = to_f32(gate[i]), u = to_f32(up[i]), d = to_f32(dy[i]);
    const float s = sigmoid(g);
    dgate[i] = from_f32<T>(d * u * s * (1.0f + g * (1.0f - s)));
    dup[i] = from_f32<T>(d * g * s);
  }
}

void check_n(const char* op, int64_t n) { AUTOSP_CHECK(n >= 0) << op << ": n = " << n; }

}  // namespace

// launchers

template <class T>
void silu_forward(const T* x, T* y, int64_t n, cudaStream_t s) {
  check_n("silu_forward", n);
  if (n == 0) return;
  silu_forward_kernel<<<detail::grid_for(n), 256, 0, s>>>(x, y, n);
  CUDA_CHECK(cudaGetLastError());
}

template <class T>
void silu_backward(const T* x, const T* dy, T* dx, int64_t n, cudaStream_t s) {
  check_n("silu_backward", n);
  if (n == 0) return;
  silu_backward_kernel<<<detail::grid_for(n), 256, 0, s>>>(x, dy, dx, n);
  CUDA_CHECK(cudaGetLastError());
}

template <class T>
void gelu_forward(const T* x, T* y, int64_t n, cudaStream_t s) {
  check_n("gelu_forward", n);
  if (n == 0) return;
  gelu_forward_kernel<<<detail::grid_for(n), 256, 0, s>>>(x, y, n);
  CUDA_CHECK(cudaGetLastError());
}

template <class T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n, cudaStream_t s) {
  check_n("gelu_backward", n);
  if (n == 0) return;
  gelu_backward_kernel<<<detail::grid_for(n), 256, 0, s>>>(x, dy, dx, n);
  CUDA_CHECK(cudaGetLastError());
}

template <class T>
void swiglu_forward(const T* gate, const T* up, T* y, int64_t n, cudaStream_t s) {
  check_n("swiglu_forward", n);
  if (n == 0) return;
  swiglu_forward_kernel<<<detail::grid_for(n), 256, 0, s>>>(gate, up, y, n);
  CUDA_CHECK(cudaGetLastError());
}

template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dy, T* dgate, T* dup, int64_t n, cudaStream_t s) {
  check_n("swiglu_backward", n);
  if (n == 0) return;
  swiglu_backward_kernel<<<detail::grid_for(n), 256, 0, s>>>(gate, up, dy, dgate, dup, n);
  CUDA_CHECK(cudaGetLastError());
}

#define AUTOSP_INSTANTIATE(T)                                                     \
  template void silu_forward<T>(const T*, T*, int64_t, cudaStream_t);             \
  template void silu_backward<T>(const T*, const T*, T*, int64_t, cudaStream_t);  \
  template void gelu_forward<T>(const T*, T*, int64_t, cudaStream_t);             \
  template void gelu_backward<T>(const T*, const T*, T*, int64_t, cudaStream_t);  \
  template void swiglu_forward<T>(const T*, const T*, T*, int64_t, cudaStream_t); \
  template void swiglu_backward<T>(const T*, const T*, const T*, T*, T*, int64_t, cudaStream_t);
AUTOSP_INSTANTIATE(float)
AUTOSP_INSTANTIATE(bf16)
#undef AUTOSP_INSTANTIATE

}  // namespace autosp::kernels::cuda
