// CUDA embedding forward and backward against kernels/cpu/embedding, in fp32 and bf16. The
// forward is a copy and the backward adds each id's rows in fp32 in token order — the CPU's
// additions in the CPU's order — so both must match exactly (bf16: the CPU's sum rounded once).
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "kernels/cpu/embedding.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

namespace {

// n ids in [0, vocab) skewed like text: a third of them one frequent id (more rows than one
// unrolled step of the backward, several times over), the rest uniform over the lower half of
// the table, so the upper half gets no gradient at all.
std::vector<int32_t> tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(0, int32_t(vocab / 2 - 1));
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = i % 3 == 0 ? 7 : id(rng);
  t[size_t(n - 1)] = int32_t(vocab - 1);  // the last row of the table
  return t;
}

template <class T>
void run(int64_t n, int64_t vocab, int64_t dim, int64_t offset) {
  INFO("n " << n << " vocab " << vocab << " dim " << dim << " offset " << offset);
  const std::vector<int32_t> tok = tokens(n, vocab, 21);
  int32_t* tok_dev = device_copy(tok);
  DevBuf<T> w(random(size_t(vocab * dim + offset), 22)), y(size_t(n * dim + offset));
  DevBuf<T> dy(random(size_t(n * dim), 23)), dw(size_t(vocab * dim));
  gpu::embedding_forward(tok_dev, w.dev + offset, y.dev + offset, n, dim, nullptr);
  Scratch scratch(gpu::embedding_backward_scratch_bytes(n, vocab));
  gpu::embedding_backward(tok_dev, dy.dev, dw.dev, n, vocab, dim, scratch.ptr, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);

  std::vector<float> want_y(size_t(n * dim)), want_dw(size_t(vocab * dim));
  cpu::embedding_forward(tok.data(), w.host.data() + offset, want_y.data(), n, dim);
  cpu::embedding_backward(tok.data(), dy.host.data(), want_dw.data(), n, vocab, dim);
  const std::vector<float> all_y = y.download();
  exact<T>(std::vector<float>(all_y.begin() + offset, all_y.end()), want_y);
  const std::vector<float> got_dw = dw.download();
  exact<T>(got_dw, want_dw);

  // Run to run: the same bits (no atomics anywhere).
  gpu::embedding_backward(tok_dev, dy.dev, dw.dev, n, vocab, dim, scratch.ptr, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  REQUIRE(dw.download() == got_dw);
  cudaFree(tok_dev);
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA embedding forward and backward equal the CPU kernel, repeated ids included", "[cuda]", float,
                   gpu::bf16) {
  REQUIRE_GPU();
  // dim 200: 16-byte row chunks; dim 37: odd rows, 2- or 4-byte chunks; an offset pointer takes
  // the narrow path; dim 600 spans three column blocks of the backward, and 10000 ids are more
  // than its grid has blocks along the ids, so blocks walk several.
  run<TestType>(300, 50, 200, 0);
  run<TestType>(300, 50, 37, 0);
  run<TestType>(300, 50, 200, 1);
  run<TestType>(1000, 10000, 600, 0);
}

TEMPLATE_TEST_CASE("CUDA embedding backward over no tokens zeroes the table gradient", "[cuda]", float, gpu::bf16) {
  REQUIRE_GPU();
  const int64_t vocab = 10, dim = 8;
  DevBuf<TestType> dw(random(size_t(vocab * dim), 24));
  gpu::embedding_backward<TestType>(nullptr, nullptr, dw.dev, 0, vocab, dim, nullptr, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  REQUIRE(dw.download() == std::vector<float>(size_t(vocab * dim), 0.0f));
}
