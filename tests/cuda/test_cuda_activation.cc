// CUDA silu, gelu and swiglu (forward and backward) against kernels/cpu/activation, in fp32 and
// bf16. fp32 tolerance: both sides evaluate the same formula in fp32 but with different exp
// and tanh (CUDA's expf/tanhf, ~1 ulp; the CPU's vexp, ~2 ulp and an absolute ~1e-7 in tanh),
// so results differ by a few ulp of the intermediates: 1e-5 relative, and 1e-5 absolute where
// a derivative crosses zero or gelu's (1 + tanh) cancels for negative inputs of size ~10.
#include <catch2/catch.hpp>

#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

namespace {

template <class T>
void check(const std::vector<float>& got, const std::vector<float>& want) {
  if constexpr (std::is_same_v<T, float>)
    close(got, want, 1e-5f, 1e-5f);
  else
    close_bf16(got, want);
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA silu, gelu and swiglu forward and backward match the CPU kernels", "[cuda]", float,
                   gpu::bf16) {
  REQUIRE_GPU();
  const int64_t n = 1003;
  // gate spans ±10, where sigmoid and tanh saturate.
  DevBuf<TestType> gate(random(size_t(n), 5, 3.0f)), up(random(size_t(n), 6)), dy(random(size_t(n), 7));
  DevBuf<TestType> silu_y(static_cast<size_t>(n)), silu_dx(static_cast<size_t>(n)), gelu_y(static_cast<size_t>(n)),
      gelu_dx(static_cast<size_t>(n)), y(static_cast<size_t>(n)), dgate(static_cast<size_t>(n)),
      dup(static_cast<size_t>(n));
  gpu::silu_forward(gate.dev, silu_y.dev, n, nullptr);
  gpu::silu_backward(gate.dev, dy.dev, silu_dx.dev, n, nullptr);
  gpu::gelu_forward(gate.dev, gelu_y.dev, n, nullptr);
  gpu::gelu_backward(gate.dev, dy.dev, gelu_dx.dev, n, nullptr);
  gpu::swiglu_forward(gate.dev, up.dev, y.dev, n, nullptr);
  gpu::swiglu_backward(gate.dev, up.dev, dy.dev, dgate.dev, dup.dev, n, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> r[7];
  for (auto& v : r) v.resize(static_cast<size_t>(n));
  cpu::silu_forward(gate.host.data(), r[0].data(), n);
  cpu::silu_backward(gate.host.data(), dy.host.data(), r[1].data(), n);
  cpu::gelu_forward(gate.host.data(), r[2].data(), n);
  cpu::gelu_backward(gate.host.data(), dy.host.data(), r[3].data(), n);
  cpu::swiglu_forward(gate.host.data(), up.host.data(), r[4].data(), n);
  cpu::swiglu_backward(gate.host.data(), up.host.data(), dy.host.data(), r[5].data(), r[6].data(), n);
  SECTION("silu") {
    check<TestType>(silu_y.download(), r[0]);
    check<TestType>(silu_dx.download(), r[1]);
  }
  SECTION("gelu") {
    check<TestType>(gelu_y.download(), r[2]);
    check<TestType>(gelu_dx.download(), r[3]);
  }
  SECTION("swiglu") {
    check<TestType>(y.download(), r[4]);
    check<TestType>(dgate.download(), r[5]);
    check<TestType>(dup.download(), r[6]);
  }
}
