// embedding: forward is a row copy; backward is the scatter-add Σ_{i: tokens[i]=v} dy[i].
// The backward is linear in dy, so the serial scatter-add in token order *is* the gradient
// (a finite difference adds nothing). The kernel promises the same float sum in the same
// order, so the comparison is bit-exact, for any thread count.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/embedding.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::kernels::cpu;
using autosp::testing::OmpThreads;
using autosp::testing::random_vec;

namespace {

// Skewed ids (id 0 about a third of the time), and never id vocab-1, so that row must be 0.
std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 2));
  std::vector<int32_t> t(n);
  for (auto& v : t) v = rng() % 3 == 0 ? 0 : d(rng);
  return t;
}

std::vector<float> scatter_add_ref(const std::vector<int32_t>& tokens, const std::vector<float>& dy, int64_t vocab,
                                   int64_t dim) {
  std::vector<float> dw(vocab * dim, 0.0f);
  for (size_t i = 0; i < tokens.size(); ++i)
    for (int64_t j = 0; j < dim; ++j) dw[tokens[i] * dim + j] += dy[i * dim + j];
  return dw;
}

}  // namespace

TEST_CASE("embedding forward copies row tokens[i] of the table", "[embedding]") {
  const int64_t vocab = 11, dim = 13, n = 50;
  const auto w = random_vec(vocab * dim, 1);
  const auto tokens = random_tokens(n, vocab, 2);
  std::vector<float> y(n * dim);
  embedding_forward(tokens.data(), w.data(), y.data(), n, dim);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < dim; ++j) REQUIRE(y[i * dim + j] == w[tokens[i] * dim + j]);
}

TEST_CASE("embedding backward overwrites dw with the serial scatter-add, bit for bit", "[embedding]") {
  const int64_t vocab = 11, dim = 13, n = 50;
  const auto tokens = random_tokens(n, vocab, 3);
  const auto dy = random_vec(n * dim, 4);
  std::vector<float> dw(vocab * dim, NAN);  // stale contents must not leak through
  embedding_backward(tokens.data(), dy.data(), dw.data(), n, vocab, dim);
  REQUIRE(dw == scatter_add_ref(tokens, dy, vocab, dim));
  for (int64_t j = 0; j < dim; ++j) REQUIRE(dw[(vocab - 1) * dim + j] == 0.0f);  // unused id
}

TEST_CASE("embedding backward with 3 threads equals the serial scatter-add exactly", "[embedding]") {
  const int64_t vocab = 1001, dim = 67, n = 2000;  // above the threading threshold
  const auto tokens = random_tokens(n, vocab, 5);
  const auto dy = random_vec(n * dim, 6);
  std::vector<float> dw(vocab * dim);
  const OmpThreads threads(3);
  embedding_backward(tokens.data(), dy.data(), dw.data(), n, vocab, dim);
  REQUIRE(dw == scatter_add_ref(tokens, dy, vocab, dim));
}
