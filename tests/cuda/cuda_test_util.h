// Helpers shared by the CUDA tests: the skip-without-device check, device buffers that remember
// their host values rounded through the element type (what the device sees, and what the CPU
// reference is then run on), copies, random data and the comparisons. Device allocations are
// never of 0 bytes: an empty tensor's buffer gets one element, so no allocation call fails and
// leaves an error behind for a launcher's cudaGetLastError to report.
//
// Tolerances: the CUDA kernels compute in fp32 and read and write T. For bf16 outputs (8
// significant bits) one rounding is 2^-9 relative; the default close() allows 2^-7 (four
// roundings: input-dependent intermediates such as rstd or sigmoid, plus the output) of the
// reference's magnitude + 1e-3 absolute for values near zero. fp32 outputs are held to what
// fp32 arithmetic in another order can explain, stated next to each comparison; ops that are
// one fp32 operation per element (elementwise, broadcast, gathers, embedding sums in the CPU's
// order) must match exactly.
#pragma once
#include <catch2/catch.hpp>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <type_traits>
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

#define REQUIRE_GPU()                                         \
  do {                                                        \
    const std::string why = ::autosp::cuda_test::no_device(); \
    if (!why.empty()) {                                       \
      WARN("skipped: " << why);                               \
      return;                                                 \
    }                                                         \
  } while (0)

inline float to_float(float v) { return v; }
inline float to_float(bf16 v) { return __bfloat162float(v); }
template <class T>
T from_float(float v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return __float2bfloat16_rn(v);
}
// v after a round trip through T.
template <class T>
float round_to(float v) {
  return to_float(from_float<T>(v));
}

// Host values rounded through T, and their device copy. Owns the device memory.
template <class T>
struct DevBuf {
  std::vector<float> host;  // T-exact values
  T* dev = nullptr;
  explicit DevBuf(std::vector<float> v) : host(std::move(v)) {
    std::vector<T> h(host.size());
    for (size_t i = 0; i < host.size(); ++i) {
      h[i] = from_float<T>(host[i]);
      host[i] = to_float(h[i]);
    }
    cudaMalloc(&dev, std::max<size_t>(1, h.size()) * sizeof(T));
    cudaMemcpy(dev, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
    // From pageable memory cudaMemcpy may return before its DMA lands, ordered only on the
    // legacy stream; the kernels under test run on non-blocking streams.
    cudaDeviceSynchronize();
  }
  explicit DevBuf(size_t n) : host(n) { cudaMalloc(&dev, std::max<size_t>(1, n) * sizeof(T)); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { cudaFree(dev); }
  std::vector<float> download() const {
    std::vector<T> h(host.size());
    cudaMemcpy(h.data(), dev, h.size() * sizeof(T), cudaMemcpyDeviceToHost);
    std::vector<float> out(h.size());
    for (size_t i = 0; i < h.size(); ++i) out[i] = to_float(h[i]);
    return out;
  }
};
using Buf = DevBuf<bf16>;

template <class T>
T* device_copy(const std::vector<T>& v) {
  T* d = nullptr;
  cudaMalloc(&d, std::max<size_t>(1, v.size()) * sizeof(T));
  cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  cudaDeviceSynchronize();  // as in DevBuf
  return d;
}

template <class T>
std::vector<T> host_copy(const T* d, size_t n) {
  std::vector<T> v(n);
  cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

// Device scratch that frees itself.
struct Scratch {
  void* ptr = nullptr;
  explicit Scratch(size_t bytes) { cudaMalloc(&ptr, std::max<size_t>(1, bytes)); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { cudaFree(ptr); }
  template <class P>
  P* as() const {
    return static_cast<P*>(ptr);
  }
};

inline std::vector<float> random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// |got − want| ≤ rel·|want| + abs, element by element. Checked without a Catch assertion per
// element (millions of them would cost seconds); the first failing element is reported.
inline void close(const std::vector<float>& got, const std::vector<float>& want, float rel, float abs) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::abs(got[i] - want[i]) <= rel * std::abs(want[i]) + abs))
      FAIL("element " << i << ": got " << got[i] << ", want " << want[i]);
  }
}

inline void close_bf16(const std::vector<float>& got, const std::vector<float>& want) {
  close(got, want, 0x1p-7f, 1e-3f);
}

// got equals the fp32 reference rounded through T, bit for bit.
template <class T>
void exact(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(got[i] == round_to<T>(want[i])))
      FAIL("element " << i << ": got " << got[i] << ", want " << round_to<T>(want[i]));
  }
}

}  // namespace autosp::cuda_test
