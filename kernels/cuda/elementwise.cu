// Binary add/sub/mul/div with suffix broadcasting (kernels/cpu/elementwise.h) and scale, for
// fp32 and bf16. Each element is one fp32 operation, so fp32 results are the CPU kernel's bit
// for bit and bf16 results are those rounded once.
//
// 16-byte vector loads when every pointer involved is 16-byte aligned and b is either one
// scalar or a whole number of vectors (then a vector of a meets one aligned vector of b); the
// last n % width elements of a scalar b go through the scalar tail. Anything else takes the
// scalar kernel.
#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.cuh"
#include "kernels/cuda/kernels.h"

namespace autosp::kernels::cuda {

using detail::from_f32;
using detail::to_f32;

namespace {

// kernels

template <BinaryOp op>
__device__ __forceinline__ float apply(float x, float y) {
  if constexpr (op == BinaryOp::add)
    return x + y;
  else if constexpr (op == BinaryOp::sub)
    return x - y;
  else if constexpr (op == BinaryOp::mul)
    return x * y;
  else
    return x / y;
}

template <class T>
struct alignas(16) Vec {
  static constexpr int n = 16 / int(sizeof(T));
  T v[n];
};

template <BinaryOp op, class T>
__global__ void binary_kernel(const T* a, const T* b, T* out, int64_t na, int64_t nb) {
  AUTOSP_GRID_STRIDE(i, na) out[i] = from_f32<T>(apply<op>(to_f32(a[i]), to_f32(b[nb == na ? i : i % nb])));
}

// nb == 1 or nb % width == 0; in the latter case na % width == 0 too, so only a scalar b has a tail.
template <BinaryOp op, class T>
__global__ void binary_vec_kernel(const T* a, const T* b, T* out, int64_t na, int64_t nb) {
  constexpr int W = Vec<T>::n;
  const int64_t nv = na / W, nbv = nb / W;
  const Vec<T>* av = reinterpret_cast<const Vec<T>*>(a);
  const Vec<T>* bv = reinterpret_cast<const Vec<T>*>(b);
  Vec<T>* ov = reinterpret_cast<Vec<T>*>(out);
  AUTOSP_GRID_STRIDE(i, nv) {
    const Vec<T> x = av[i];
    Vec<T> y;
    if (nb == 1) {
      const float s = to_f32(b[0]);
#pragma unroll
      for (int k = 0; k < W; ++k) y.v[k] = from_f32<T>(apply<op>(to_f32(x.v[k]), s));
    } else {
      const Vec<T> z = bv[nbv == nv ? i : i % nbv];
#pragma unroll
      for (int k = 0; k < W; ++k) y.v[k] = from_f32<T>(apply<op>(to_f32(x.v[k]), to_f32(z.v[k])));
    }
    ov[i] = y;
  }
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t < na - nv * W) {
    const int64_t i = nv * W + t;
    out[i] = from_f32<T>(apply<op>(to_f32(a[i]), to_f32(b[i % nb])));
  }
}

template <class T>
__global__ void scale_kernel(const T* x, T* out, int64_t n, float factor) {
  AUTOSP_GRID_STRIDE(i, n) out[i] = from_f32<T>(to_f32(x[i]) * factor);
}

template <class T>
__global__ void scale_vec_kernel(const T* x, T* out, int64_t n, float factor) {
  constexpr int W = Vec<T>::n;
  const int64_t nv = n / W;
  const Vec<T>* xv = reinterpret_cast<const Vec<T>*>(x);
  Vec<T>* ov = reinterpret_cast<Vec<T>*>(out);
  AUTOSP_GRID_STRIDE(i, nv) {
    const Vec<T> v = xv[i];
    Vec<T> y;
#pragma unroll
    for (int k = 0; k < W; ++k) y.v[k] = from_f32<T>(to_f32(v.v[k]) * factor);
    ov[i] = y;
  }
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t < n - nv * W) out[nv * W + t] = from_f32<T>(to_f32(x[nv * W + t]) * factor);
}

// launchers

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <BinaryOp op, class T>
void launch_binary(const T* a, const T* b, T* out, int64_t na, int64_t nb, cudaStream_t s) {
  constexpr int W = Vec<T>::n;
  // A vector grid also covers the tail: it needs at least na % W < W threads, and has ≥ 256.
  if (aligned16(a) && aligned16(out) && (nb == 1 || (nb % W == 0 && aligned16(b))))
    binary_vec_kernel<op><<<detail::grid_for(na / W), 256, 0, s>>>(a, b, out, na, nb);
  else
    binary_kernel<op><<<detail::grid_for(na), 256, 0, s>>>(a, b, out, na, nb);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace

template <class T>
void binary(BinaryOp op, const T* a, const T* b, T* out, int64_t na, int64_t nb, cudaStream_t s) {
  AUTOSP_CHECK(nb > 0 && na >= 0 && na % nb == 0) << "binary: nb = " << nb << " must divide na = " << na;
  if (na == 0) return;
  switch (op) {
    case BinaryOp::add:
      return launch_binary<BinaryOp::add>(a, b, out, na, nb, s);
    case BinaryOp::sub:
      return launch_binary<BinaryOp::sub>(a, b, out, na, nb, s);
    case BinaryOp::mul:
      return launch_binary<BinaryOp::mul>(a, b, out, na, nb, s);
    case BinaryOp::div:
      return launch_binary<BinaryOp::div>(a, b, out, na, nb, s);
  }
  AUTOSP_CHECK(false) << "binary: unknown op " << static_cast<int>(op);
}

template <class T>
void scale(const T* x, T* out, int64_t n, float factor, cudaStream_t s) {
  AUTOSP_CHECK(n >= 0) << "scale: n = " << n;
  if (n == 0) return;
  if (aligned16(x) && aligned16(out))
    scale_vec_kernel<<<detail::grid_for(n / Vec<T>::n), 256, 0, s>>>(x, out, n, factor);
  else
    scale_kernel<<<detail::grid_for(n), 256, 0, s>>>(x, out, n, factor);
  CUDA_CHECK(cudaGetLastError());
}

template void binary<float>(BinaryOp, const float*, const float*, float*, int64_t, int64_t, cudaStream_t);
template void binary<bf16>(BinaryOp, const bf16*, const bf16*, bf16*, int64_t, int64_t, cudaStream_t);
template void scale<float>(const float*, float*, int64_t, float, cudaStream_t);
template void scale<bf16>(const bf16*, bf16*, int64_t, float, cudaStream_t);

}  // namespace autosp::kernels::cuda
