// CUDA AdamW against kernels/cpu/adamw: fp32 state compared at 1e-5 relative (the same formula,
// with the bias corrections rounded to fp32 on the GPU), the bf16 copy at the bf16 default.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/cpu/adamw.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

TEST_CASE("CUDA AdamW matches the CPU kernel and refreshes the bf16 copy", "[cuda]") {
  REQUIRE_GPU();
  const int64_t n = 777;
  std::vector<float> p = random(n, 8), g = random(n, 9), m(n, 0.0f), v(n, 0.0f);
  float *pd = device_copy(p), *gd = device_copy(g), *md = device_copy(m), *vd = device_copy(v);
  Buf copy(n);
  for (int64_t step = 1; step <= 3; ++step) {
    gpu::adamw_step(pd, copy.dev, gd, md, vd, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f, nullptr);
    cpu::adamw_step(p.data(), g.data(), m.data(), v.data(), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f);
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const auto pg = host_copy(pd, size_t(n));
  for (int64_t i = 0; i < n; ++i) CHECK(std::abs(pg[i] - p[i]) <= 1e-5f * (std::abs(p[i]) + 1.0f));
  close_bf16(copy.download(), p);
  for (float* d : {pd, gd, md, vd}) cudaFree(d);
}
