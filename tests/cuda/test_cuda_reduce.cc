// CUDA reduce_sum, broadcast and sum_squares against kernels/cpu/reduce, in fp32 and bf16.
// reduce_sum: the CPU accumulates in double, the GPU in fp32 trees, so an output may differ by
// ~log2(n)·2^-24 of Σ|x| (the CPU kernel run on |x|); we allow 1e-5·Σ|x|, plus 2^-8 of the
// value for a bf16 output (one rounding). broadcast is one multiply per element: exact.
// sum_squares: double accumulation on both sides, one final rounding to fp32: 1e-6 relative.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/cpu/reduce.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

namespace {

struct Case {
  std::vector<int64_t> shape;
  std::vector<bool> reduce;
};

int64_t numel(const std::vector<int64_t>& shape, const std::vector<bool>& reduce, bool kept_only) {
  int64_t n = 1;
  for (size_t d = 0; d < shape.size(); ++d)
    if (!kept_only || !reduce[d]) n *= shape[d];
  return n;
}

// Rows and columns layouts, middle and alternating axes, size-1 axes, rank 6, everything, and
// reductions long enough that threads loop (3000 in a row, 5000 down a column).
const Case kCases[] = {
    {{3, 5, 4, 7}, {false, true, true, false}},   // middle axes: the column layout
    {{3, 5, 4, 7}, {true, true, true, false}},    // a bias gradient
    {{3, 5, 4, 7}, {false, false, false, true}},  // row sums
    {{3, 5, 4, 7}, {true, false, true, false}},   // alternating
    {{3, 5, 4, 7}, {false, true, false, true}},   // alternating, last reduced
    {{3, 5, 4, 7}, {true, true, true, true}},     // everything
    {{2, 3, 1, 4, 5, 3}, {true, false, true, false, true, false}},
    {{2, 3, 1, 4, 5, 3}, {false, true, false, true, false, true}},
    {{1, 1, 1}, {false, true, false}},  // one element
    {{2, 3000}, {false, true}},
    {{5000, 3}, {true, false}},
    {{4, 2, 0, 3}, {false, false, true, false}},  // empty sums: zeros
};

}  // namespace

TEMPLATE_TEST_CASE("CUDA reduce_sum matches the CPU kernel over any axis set", "[cuda]", float, gpu::bf16) {
  REQUIRE_GPU();
  for (const Case& c : kCases) {
    const int64_t n = numel(c.shape, c.reduce, false), n_out = numel(c.shape, c.reduce, true);
    INFO("shape of " << c.shape.size() << " axes, first reduced " << c.reduce[0] << ", n " << n);
    DevBuf<TestType> x(random(size_t(n), 41)), out(random(size_t(n_out), 42));
    gpu::reduce_sum(x.dev, out.dev, c.shape, c.reduce, 0.5f, nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    std::vector<float> want(static_cast<size_t>(n_out)), mag(static_cast<size_t>(n_out)), absx(x.host.size());
    for (size_t i = 0; i < absx.size(); ++i) absx[i] = std::abs(x.host[i]);
    cpu::reduce_sum(x.host.data(), want.data(), c.shape, c.reduce, 0.5f);
    cpu::reduce_sum(absx.data(), mag.data(), c.shape, c.reduce, 0.5f);
    const std::vector<float> got = out.download();
    const float rel = std::is_same_v<TestType, float> ? 0.0f : 0x1p-8f;
    for (size_t o = 0; o < got.size(); ++o) {
      if (!(std::abs(got[o] - want[o]) <= rel * std::abs(want[o]) + 1e-5f * mag[o] + 1e-6f))
        FAIL("output " << o << ": got " << got[o] << ", want " << want[o]);
    }
    // Run to run: the same bits.
    gpu::reduce_sum(x.dev, out.dev, c.shape, c.reduce, 0.5f, nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(out.download() == got);
  }
}

TEMPLATE_TEST_CASE("CUDA broadcast equals the CPU kernel exactly", "[cuda]", float, gpu::bf16) {
  REQUIRE_GPU();
  for (const Case& c : kCases) {
    const int64_t n = numel(c.shape, c.reduce, false), n_in = numel(c.shape, c.reduce, true);
    INFO("shape of " << c.shape.size() << " axes, n " << n);
    DevBuf<TestType> x(random(size_t(n_in), 43)), out(static_cast<size_t>(n));
    gpu::broadcast(x.dev, out.dev, c.shape, c.reduce, -1.5f, nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    std::vector<float> want(static_cast<size_t>(n));
    cpu::broadcast(x.host.data(), want.data(), c.shape, c.reduce, -1.5f);
    exact<TestType>(out.download(), want);
  }
}

TEST_CASE("CUDA sum_squares matches the CPU kernel and repeats bit for bit", "[cuda]") {
  REQUIRE_GPU();
  double* scratch = nullptr;
  cudaMalloc(&scratch, gpu::kSumSquaresScratch * sizeof(double));
  float* out = device_copy(std::vector<float>{-1.0f});
  for (int64_t n : {0, 1, 5, 1000003}) {
    INFO("n " << n);
    const std::vector<float> x = random(size_t(n), 44, 3.0f);
    float* xd = device_copy(x);
    gpu::sum_squares(xd, n, out, scratch, nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const float got = host_copy(out, 1)[0];
    const double want = cpu::sum_squares(x.data(), n);
    REQUIRE(std::abs(double(got) - want) <= 1e-6 * want);
    gpu::sum_squares(xd, n, out, scratch, nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(host_copy(out, 1)[0] == got);
    cudaFree(xd);
  }
  cudaFree(out);
  cudaFree(scratch);
}
