// CUDA rope against kernels/cpu/rope, in fp32 and bf16, up to a million positions. Both sides
// form the angle in double; the GPU then rotates with fp32 sincosf of the angle reduced mod 2π
// (~4e-7 rad), so fp32 results agree to ~1e-6 of |x|: 1e-5 relative + 1e-5 absolute.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/cpu/rope.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

TEMPLATE_TEST_CASE("CUDA rope matches the CPU kernel, up to a million positions, and inverts", "[cuda]", float,
                   gpu::bf16) {
  REQUIRE_GPU();
  const int64_t B = 2, T = 5, H = 3, D = 16;
  const size_t n = size_t(B * T * H * D);
  DevBuf<TestType> x(random(n, 4)), y(n), back(n);
  const std::vector<int32_t> pos = {0, 1, 7, 1000, 1000000, 3, 65535, 12, 999999, 5};
  int32_t* pos_dev = device_copy(pos);
  gpu::rope(x.dev, pos_dev, y.dev, B, T, H, D, 10000.0f, false, nullptr);
  gpu::rope(y.dev, pos_dev, back.dev, B, T, H, D, 10000.0f, true, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> ry(n);
  cpu::rope(x.host.data(), pos.data(), ry.data(), B, T, H, D, 10000.0f, false);
  const auto b = back.download();
  if constexpr (std::is_same_v<TestType, float>) {
    close(y.download(), ry, 1e-5f, 1e-5f);
    close(b, x.host, 1e-5f, 1e-5f);
  } else {
    close_bf16(y.download(), ry);
    // Twice rounded to bf16 on the way: 2 × 2^-8 relative.
    close(b, x.host, 0x1p-7f, 2e-2f);
  }
  cudaFree(pos_dev);
}

TEMPLATE_TEST_CASE("CUDA rope may write in place", "[cuda]", float, gpu::bf16) {
  REQUIRE_GPU();
  const int64_t B = 1, T = 4, H = 2, D = 8;
  const size_t n = size_t(B * T * H * D);
  DevBuf<TestType> x(random(n, 14)), y(n);
  const std::vector<int32_t> pos = {3, 1, 4, 1};
  int32_t* pos_dev = device_copy(pos);
  gpu::rope(x.dev, pos_dev, y.dev, B, T, H, D, 500000.0f, false, nullptr);
  gpu::rope(x.dev, pos_dev, x.dev, B, T, H, D, 500000.0f, false, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  REQUIRE(x.download() == y.download());
  cudaFree(pos_dev);
}
