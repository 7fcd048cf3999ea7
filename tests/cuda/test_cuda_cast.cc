// CUDA casts: f32 → bf16 rounds to nearest even, bf16 → f32 is exact.
#include <catch2/catch.hpp>

#include <vector>

#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

TEST_CASE("CUDA casts round to nearest even and back exactly", "[cuda]") {
  REQUIRE_GPU();
  const std::vector<float> x = random(513, 10);
  float* xd = device_copy(x);
  Buf b(x.size());
  float* back = device_copy(std::vector<float>(x.size()));
  gpu::cast_f32_to_bf16(xd, b.dev, int64_t(x.size()), nullptr);
  gpu::cast_bf16_to_f32(b.dev, back, int64_t(x.size()), nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const auto r = host_copy(back, x.size());
  for (size_t i = 0; i < x.size(); ++i) CHECK(r[i] == __bfloat162float(__float2bfloat16_rn(x[i])));
  cudaFree(xd);
  cudaFree(back);
}
