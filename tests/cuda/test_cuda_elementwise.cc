// CUDA binary ops and scale against kernels/cpu/elementwise. Each output is one fp32
// operation on the same (T-rounded) inputs as the CPU's, so results must match exactly: fp32
// bit for bit, bf16 as the CPU result rounded once.
#include <catch2/catch.hpp>

#include <vector>

#include "kernels/cpu/elementwise.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

namespace {

struct Case {
  const char* what;
  int64_t na, nb;
  int64_t offset;  // elements the pointers are moved by (0: 16-byte aligned, vector path)
};

// Vector path with same-shape, suffix and scalar b (with a tail); scalar path when b is not a
// whole number of vectors or the pointers are not 16-byte aligned.
const Case kCases[] = {
    {"same shape", 8 * 125, 8 * 125, 0}, {"bias over rows", 24 * 40, 40, 0}, {"scalar with tail", 1003, 1, 0},
    {"odd suffix", 7 * 13, 7, 0},        {"misaligned", 8 * 40, 40, 1},      {"one element", 1, 1, 0},
};

}  // namespace

TEMPLATE_TEST_CASE("CUDA binary ops with suffix broadcasting equal the CPU kernel exactly", "[cuda]", float,
                   gpu::bf16) {
  REQUIRE_GPU();
  const std::pair<gpu::BinaryOp, cpu::BinaryOp> ops[] = {{gpu::BinaryOp::add, cpu::BinaryOp::add},
                                                         {gpu::BinaryOp::sub, cpu::BinaryOp::sub},
                                                         {gpu::BinaryOp::mul, cpu::BinaryOp::mul},
                                                         {gpu::BinaryOp::div, cpu::BinaryOp::div}};
  for (const Case& c : kCases)
    for (const auto& [gop, cop] : ops) {
      INFO(c.what << ", op " << int(gop));
      DevBuf<TestType> a(random(size_t(c.na + c.offset), 1)), b(random(size_t(c.nb + c.offset), 2)),
          out(size_t(c.na + c.offset));
      gpu::binary(gop, a.dev + c.offset, b.dev + c.offset, out.dev + c.offset, c.na, c.nb, nullptr);
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      std::vector<float> want(size_t(c.na));
      cpu::binary(cop, a.host.data() + c.offset, b.host.data() + c.offset, want.data(), c.na, c.nb);
      const std::vector<float> got = out.download();
      exact<TestType>(std::vector<float>(got.begin() + c.offset, got.end()), want);
    }
}

TEMPLATE_TEST_CASE("CUDA binary ops may write in place over a", "[cuda]", float, gpu::bf16) {
  REQUIRE_GPU();
  const int64_t na = 8 * 30, nb = 8 * 3;
  DevBuf<TestType> a(random(size_t(na), 3)), b(random(size_t(nb), 4));
  gpu::binary(gpu::BinaryOp::mul, a.dev, b.dev, a.dev, na, nb, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> want(static_cast<size_t>(na));
  cpu::binary(cpu::BinaryOp::mul, a.host.data(), b.host.data(), want.data(), na, nb);
  exact<TestType>(a.download(), want);
}

TEMPLATE_TEST_CASE("CUDA scale equals the CPU kernel exactly, aligned or not", "[cuda]", float, gpu::bf16) {
  REQUIRE_GPU();
  for (int64_t offset : {0, 1}) {
    const int64_t n = 1005;
    DevBuf<TestType> x(random(size_t(n + offset), 5)), y(size_t(n + offset));
    gpu::scale(x.dev + offset, y.dev + offset, n, -0.37f, nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    std::vector<float> want(static_cast<size_t>(n));
    cpu::scale(x.host.data() + offset, want.data(), n, -0.37f);
    const std::vector<float> got = y.download();
    exact<TestType>(std::vector<float>(got.begin() + offset, got.end()), want);
  }
}
