// Fused LM head + log-softmax + NLL (see cross_entropy.h), tiled over row blocks of tokens and
// vocabulary chunks so that only one row_block × chunk tile of logits ever exists.
//
// Threading: each tile's GEMM is big (256 × chunk × D), so OpenBLAS threads it; the softmax
// arithmetic on the tile is an OpenMP loop over its rows. GEMMs are never issued from inside
// an OpenMP region (OpenBLAS's pool serialises such callers).
//
// Determinism: tiles are visited in a fixed order and each output is accumulated by a
// sequence of GEMMs in that order, so results do not depend on scheduling: dh[rows] sums the
// vocabulary chunks in increasing order, dw[chunk] sums the row blocks in increasing order.
#include "kernels/cpu/cross_entropy.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/check.h"
#include "kernels/cpu/vexp.h"

namespace autosp::kernels::cpu {
namespace {

constexpr int64_t kRowBlock = 256;
// Tiles smaller than this (elements) are processed on one thread: waking the team costs
// microseconds (milliseconds on an oversubscribed host), more than ~1 ns of work per element.
constexpr int64_t kParallelMin = 1 << 15;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void check_args(const CrossEntropyArgs& a, const int32_t* targets) {
  AUTOSP_CHECK(a.N >= 0 && a.D > 0 && a.V > 0 && a.chunk > 0)
      << "cross_entropy: bad sizes N=" << a.N << " D=" << a.D << " V=" << a.V << " chunk=" << a.chunk;
  for (int64_t i = 0; i < a.N; ++i) {
    const int32_t t = targets[i];
    AUTOSP_CHECK(t == a.ignore_index || (t >= 0 && t < a.V))
        << "cross_entropy: target " << t << " of row " << i << " is outside [0, " << a.V << ")";
  }
}

// tile (nr × nc, row stride ld) = h[r0 : r0+nr] · w[c0 : c0+nc]ᵀ
void logits_tile(const CrossEntropyArgs& a, const float* h, const float* w, int64_t r0, int64_t nr, int64_t c0,
                 int64_t nc, float* tile, int64_t ld) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nc, a.D, 1.0f, h + r0 * a.D, a.D, w + c0 * a.D, a.D,
              0.0f, tile, ld);
}

}  // namespace

void cross_entropy_forward(const CrossEntropyArgs& a, const float* h, const float* w, const int32_t* targets,
                           float* loss_sum, float* count, float* lse) {
  check_args(a, targets);
  const int64_t chunk = std::min(a.chunk, a.V);
  std::vector<float> tile(kRowBlock * chunk), m(kRowBlock), l(kRowBlock), target_logit(kRowBlock);
  double loss = 0.0;  // summed serially in row order: deterministic, and exact enough for 1e6 rows
  int64_t counted = 0;

  for (int64_t r0 = 0; r0 < a.N; r0 += kRowBlock) {
    const int64_t nr = std::min(kRowBlock, a.N - r0);
    std::fill(m.begin(), m.end(), kNegInf);
    std::fill(l.begin(), l.end(), 0.0f);
    for (int64_t c0 = 0; c0 < a.V; c0 += chunk) {
      const int64_t nc = std::min(chunk, a.V - c0);
      logits_tile(a, h, w, r0, nr, c0, nc, tile.data(), chunk);
#pragma omp parallel for schedule(static) if (nr * nc >= kParallelMin)
      for (int64_t r = 0; r < nr; ++r) {
        float* x = tile.data() + r * chunk;
        const int64_t t = targets[r0 + r];
        if (t >= c0 && t < c0 + nc) target_logit[r] = x[t - c0];
        // Online logsumexp: rescale the running sum to the new max, then add this chunk
        // (exp_shift_sum overwrites the tile row, which is not needed afterwards).
        const float mx = row_max(x, nc, m[r]);
        l[r] = l[r] * vexp(m[r] - mx) + exp_shift_sum(x, nc, mx);
        m[r] = mx;
      }
    }
    for (int64_t r = 0; r < nr; ++r) {
      lse[r0 + r] = m[r] + std::log(l[r]);
      if (targets[r0 + r] == a.ignore_index) continue;
      loss += double(lse[r0 + r]) - double(target_logit[r]);
      ++counted;
    }
  }
  *loss_sum = static_cast<float>(loss);
  *count = static_cast<float>(counted);
}

void cross_entropy_backward(const CrossEntropyArgs& a, const float* h, const float* w, const int32_t* targets,
                            const float* lse, float dloss, float* dh, float* dw) {
  check_args(a, targets);
  if (a.N == 0) {  // no token: every gradient is zero, and the loops below would write nothing
    std::fill(dw, dw + a.V * a.D, 0.0f);
    return;
  }
  const int64_t chunk = std::min(a.chunk, a.V);
  std::vector<float> tile(kRowBlock * chunk);

  // Chunk-outer: w[chunk] and dw[chunk] stay in cache while every row block passes by.
  for (int64_t c0 = 0; c0 < a.V; c0 += chunk) {
    const int64_t nc = std::min(chunk, a.V - c0);
    for (int64_t r0 = 0; r0 < a.N; r0 += kRowBlock) {
      const int64_t nr = std::min(kRowBlock, a.N - r0);
      logits_tile(a, h, w, r0, nr, c0, nc, tile.data(), chunk);
      // tile becomes dlogits = dloss · (softmax - onehot(target)), zero for ignored rows.
#pragma omp parallel for schedule(static) if (nr * nc >= kParallelMin)
      for (int64_t r = 0; r < nr; ++r) {
        float* x = tile.data() + r * chunk;
        const int64_t t = targets[r0 + r];
        if (t == a.ignore_index) {
          std::fill(x, x + nc, 0.0f);
          continue;
        }
        const float lr = lse[r0 + r];
#pragma omp simd
        for (int64_t c = 0; c < nc; ++c) x[c] = dloss * vexp(x[c] - lr);
        if (t >= c0 && t < c0 + nc) x[t - c0] -= dloss;
      }
      // dh[rows] (+)= dlogits · w[chunk] ;  dw[chunk] (+)= dlogitsᵀ · h[rows]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, a.D, nc, 1.0f, tile.data(), chunk, w + c0 * a.D,
                  a.D, c0 == 0 ? 0.0f : 1.0f, dh + r0 * a.D, a.D);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nc, a.D, nr, 1.0f, tile.data(), chunk, h + r0 * a.D,
                  a.D, r0 == 0 ? 0.0f : 1.0f, dw + c0 * a.D, a.D);
    }
  }
}

}  // namespace autosp::kernels::cpu
