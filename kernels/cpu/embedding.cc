// Token embedding lookup and its backward.
//
// The backward is a scatter-add, which races if parallelised over tokens. Instead the token
// indices are bucketed by vocabulary id (a counting sort, stable in token order), and each
// vocabulary row is summed by one thread in increasing token order. That is race-free, and
// every dw row is the same float sum a serial loop over tokens would produce — so the
// result is identical for any thread count, not just a fixed one.
#include "kernels/cpu/embedding.h"

#include <cstring>
#include <vector>

#include "core/check.h"

namespace autosp::kernels::cpu {
namespace {
constexpr int64_t kParallelMin = 1 << 15;  // elements moved before threads pay off
}  // namespace

void embedding_forward(const int32_t* tokens, const float* w, float* y, int64_t n_tokens, int64_t dim) {
  AUTOSP_CHECK(n_tokens >= 0 && dim > 0) << "embedding_forward: n_tokens = " << n_tokens << ", dim = " << dim;
  // No vocab size here to check against: ids are validated by the data loader (a user error
  // belongs there, as a Status) and by embedding_backward.
#pragma omp parallel for schedule(static) if (n_tokens * dim >= kParallelMin)
  for (int64_t i = 0; i < n_tokens; ++i)
    std::memcpy(y + i * dim, w + static_cast<int64_t>(tokens[i]) * dim, sizeof(float) * dim);
}

void embedding_backward(const int32_t* tokens, const float* dy, float* dw, int64_t n_tokens, int64_t vocab,
                        int64_t dim) {
  AUTOSP_CHECK(n_tokens >= 0 && vocab > 0 && dim > 0)
      << "embedding_backward: n_tokens = " << n_tokens << ", vocab = " << vocab << ", dim = " << dim;
  // Counting sort: start[v] .. start[v+1] index `order`, which lists token positions with id v.
  std::vector<int64_t> start(vocab + 1, 0);
  for (int64_t i = 0; i < n_tokens; ++i) {
    const int32_t v = tokens[i];
    AUTOSP_CHECK(v >= 0 && v < vocab) << "embedding_backward: token " << v << " at " << i << " outside [0, "
                                      << vocab << ")";
    ++start[v + 1];
  }
  for (int64_t v = 0; v < vocab; ++v) start[v + 1] += start[v];
  std::vector<int64_t> order(n_tokens);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n_tokens; ++i) order[fill[tokens[i]]++] = i;
  }

// Dynamic chunks: token frequencies are skewed (a few ids dominate), so equal vocab ranges
  // are unequal work. Each row still has one owner, so the order of its sum is fixed.
#pragma omp parallel for schedule(dynamic, 256) if ((vocab + n_tokens) * dim >= kParallelMin)
  for (int64_t v = 0; v < vocab; ++v) {
    float* row = dw + v * dim;
    std::memset(row, 0, sizeof(float) * dim);
    for (int64_t k = start[v]; k < start[v + 1]; ++k) {
      const float* src = dy + order[k] * dim;
#pragma omp simd
      for (int64_t j = 0; j < dim; ++j) row[j] += src[j];
    }
  }
}

}  // namespace autosp::kernels::cpu
