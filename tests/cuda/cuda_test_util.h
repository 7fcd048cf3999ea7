// Helpers shared by the CUDA tests: the skip-without-device check, bf16 device buffers that
// remember their bf16-rounded host values, copies, random data and the bf16 comparison.
#pragma once
#include <catch2/catch.hpp>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace autosp::cuda_test {

using bf16 = __nv_bfloat16;


// "" when a device is usable, else why not.
inline std::string no_device() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no CUDA device: ") + cudaGetErrorString(e);
  return n == 0 ? "no CUDA device" : "";
}

#define REQUIRE_GPU()                                 \
  do {                                                \
    const std::string why = ::autosp::cuda_test::no_device();              \
    if (!why.empty()) {                               \
      WARN("skipped: " << why);                       \
      return;                                         \
    }                                                 \
  } while (0)

// Host values rounded through bf16 (what the device sees), and their device copy.
struct Buf {
  std::vector<float> host;  // bf16-exact values
  bf16* dev = nullptr;
  explicit Buf(std::vector<float> v) : host(std::move(v)) {
    std::vector<bf16> h(host.size());
    for (size_t i = 0; i < host.size(); ++i) {
      h[i] = __float2bfloat16_rn(host[i]);
      host[i] = __bfloat162float(h[i]);
    }
    cudaMalloc(&dev, h.size() * sizeof(bf16));
    cudaMemcpy(dev, h.data(), h.size() * sizeof(bf16), cudaMemcpyHostToDevice);
  }
  explicit Buf(size_t n) : host(n) { cudaMalloc(&dev, n * sizeof(bf16)); }
  ~Buf() { cudaFree(dev); }
  std::vector<float> download() const {
    std::vector<bf16> h(host.size());
    cudaMemcpy(h.data(), dev, h.size() * sizeof(bf16), cudaMemcpyDeviceToHost);
    std::vector<float> out(h.size());
    for (size_t i = 0; i < h.size(); ++i) out[i] = __bfloat162float(h[i]);
    return out;
  }
};

template <class T>
T* device_copy(const std::vector<T>& v) {
  T* d = nullptr;
  cudaMalloc(&d, v.size() * sizeof(T));
  cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}

template <class T>
std::vector<T> host_copy(const T* d, size_t n) {
  std::vector<T> v(n);
  cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

inline std::vector<float> random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

inline void close_bf16(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    REQUIRE(std::abs(got[i] - want[i]) <= 0x1p-7f * std::abs(want[i]) + 1e-3f);
  }
}


}  // namespace autosp::cuda_test
