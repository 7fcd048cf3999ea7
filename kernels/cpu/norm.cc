// RMSNorm and LayerNorm over the last dimension, forward and backward.
//
// Row statistics (sum of squares, mean, variance, and the two backward dot products) are
// accumulated in double. These CPU kernels are the reference the CUDA kernels and the
// SP-vs-single-device invariant are checked against, so their error should not grow with
// `dim`: an fp32 sum over 8192 elements carries ~1e-5 relative error, double keeps the
// statistic exact to the final fp32 rounding. The cost is small — the loops are
// memory-bound and float→double converts vectorise. Variance is two-pass (mean first), so
// rows with a large mean do not cancel catastrophically.
//
// dg/db in the backward: each thread owns a contiguous block of rows and a double partial
// of length dim; the partials are added in thread order, so results repeat exactly for a
// fixed thread count (and the double partials keep the sum over 1M rows accurate).
#include "kernels/cpu/norm.h"

#include <omp.h>

#include <cmath>
#include <vector>

#include "core/check.h"

namespace autosp::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements (rows × dim) before threads pay off

double sum_sq(const float* x, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += static_cast<double>(x[j]) * x[j];
  return s;
}

double sum(const float* x, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += x[j];
  return s;
}

// Σ (x - mean)^2, the second pass of the variance.
double sum_sq_centered(const float* x, int64_t n, double mean) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) {
    const double d = x[j] - mean;
    s += d * d;
  }
  return s;
}

float rms_rstd(const float* x, int64_t dim, float eps) {
  return static_cast<float>(1.0 / std::sqrt(sum_sq(x, dim) / static_cast<double>(dim) + eps));
}

// The mean is kept as an unevaluated fp32 pair hi + lo: for a row with mean 1000 and spread
// 1, rounding the mean to one float costs 3e-5 in every centred value, ~10x the fp32 error
// of the rest. (x - hi) is exact when x is near the mean (Sterbenz), so the pair recovers
// the double mean's accuracy for one extra subtraction.
struct LayerStats {
  float mean_hi;
  float mean_lo;
  float rstd;
  float centered(float x) const { return (x - mean_hi) - mean_lo; }
};

LayerStats layer_stats(const float* x, int64_t dim, float eps) {
  const double mean = sum(x, dim) / static_cast<double>(dim);
  const double var = sum_sq_centered(x, dim, mean) / static_cast<double>(dim);  // biased, as PyTorch
  const float hi = static_cast<float>(mean);
  return {hi, static_cast<float>(mean - hi), static_cast<float>(1.0 / std::sqrt(var + eps))};
}

// Runs row_fn(row, dg_partial, db_partial) over all rows, each thread on a contiguous block
// with its own zeroed double partials; then dg (and db, when n_partials == 2) = Σ partials in
// thread order.
template <class RowFn>
void rows_with_partials(int64_t rows, int64_t dim, int n_partials, float* dg, float* db, RowFn row_fn) {
  const int max_threads = omp_get_max_threads();
  std::vector<double> part(static_cast<size_t>(max_threads) * n_partials * dim, 0.0);
#pragma omp parallel if (rows * dim >= kParallelMin)
  {
    const int nt = omp_get_num_threads();
    const int t = omp_get_thread_num();
    AUTOSP_CHECK(nt <= max_threads) << "norm: team of " << nt << " exceeds " << max_threads;
    double* pg = part.data() + static_cast<size_t>(t) * n_partials * dim;
    double* pb = n_partials == 2 ? pg + dim : nullptr;
    const int64_t r0 = rows * t / nt;
    const int64_t r1 = rows * (t + 1) / nt;
    for (int64_t r = r0; r < r1; ++r) row_fn(r, pg, pb);
  }
  for (int64_t j = 0; j < dim; ++j) {
    double g = 0.0, b = 0.0;
    for (int t = 0; t < max_threads; ++t) {
      const double* pg = part.data() + static_cast<size_t>(t) * n_partials * dim;
      g += pg[j];
      if (n_partials == 2) b += pg[dim + j];
    }
    dg[j] = static_cast<float>(g);
    if (n_partials == 2) db[j] = static_cast<float>(b);
  }
}

void check_sizes(const char* op, int64_t rows, int64_t dim) {
  AUTOSP_CHECK(rows >= 0 && dim > 0) << op << ": rows = " << rows << ", dim = " << dim;
}

}  // namespace

void rms_norm_forward(const float* x, const float* g, float* y, int64_t rows, int64_t dim, float eps) {
  check_sizes("rms_norm_forward", rows, dim);
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    const float rstd = rms_rstd(xr, dim, eps);
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j) yr[j] = xr[j] * rstd * g[j];
  }
}

// With xhat = x r and r = (mean(x^2) + eps)^(-1/2):
//   dx = r (dy g - xhat · mean(dy g xhat)),   dg = Σ_rows dy xhat.
void rms_norm_backward(const float* x, const float* g, const float* dy, float* dx, float* dg, int64_t rows,
                       int64_t dim, float eps) {
  check_sizes("rms_norm_backward", rows, dim);
  rows_with_partials(rows, dim, 1, dg, nullptr, [&](int64_t r, double* pg, double*) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    float* dxr = dx + r * dim;
    const float rstd = rms_rstd(xr, dim, eps);
    double dot = 0.0;  // Σ dy g xhat
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < dim; ++j) dot += static_cast<double>(dyr[j] * g[j]) * (xr[j] * rstd);
    const float c = static_cast<float>(dot / static_cast<double>(dim));
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j) {
      const float xhat = xr[j] * rstd;
      pg[j] += dyr[j] * xhat;  // before dx is written, so dx may alias dy
      dxr[j] = rstd * (dyr[j] * g[j] - xhat * c);
    }
  });
}

void layer_norm_forward(const float* x, const float* g, const float* b, float* y, int64_t rows, int64_t dim,
                        float eps) {
  check_sizes("layer_norm_forward", rows, dim);
#pragma omp parallel for schedule(static) if (rows * dim >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    const LayerStats s = layer_stats(xr, dim, eps);
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j) yr[j] = s.centered(xr[j]) * s.rstd * g[j] + b[j];
  }
}

// With xhat = (x - mean) r and dxhat = dy g:
//   dx = r (dxhat - mean(dxhat) - xhat · mean(dxhat xhat)),  dg = Σ dy xhat,  db = Σ dy.
void layer_norm_backward(const float* x, const float* g, const float* dy, float* dx, float* dg, float* db,
                         int64_t rows, int64_t dim, float eps) {
  check_sizes("layer_norm_backward", rows, dim);
  rows_with_partials(rows, dim, 2, dg, db, [&](int64_t r, double* pg, double* pb) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    float* dxr = dx + r * dim;
    const LayerStats s = layer_stats(xr, dim, eps);
    double sum_dxhat = 0.0, dot = 0.0;
#pragma omp simd reduction(+ : sum_dxhat, dot)
    for (int64_t j = 0; j < dim; ++j) {
      const float dxhat = dyr[j] * g[j];
      sum_dxhat += dxhat;
      dot += static_cast<double>(dxhat) * (s.centered(xr[j]) * s.rstd);
    }
    const float c1 = static_cast<float>(sum_dxhat / static_cast<double>(dim));
    const float c2 = static_cast<float>(dot / static_cast<double>(dim));
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j) {
      const float xhat = s.centered(xr[j]) * s.rstd;
      pg[j] += dyr[j] * xhat;
      pb[j] += dyr[j];
      dxr[j] = s.rstd * (dyr[j] * g[j] - c1 - xhat * c2);
    }
  });
}

}  // namespace autosp::kernels::cpu
