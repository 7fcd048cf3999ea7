// Sum over any set of axes, its adjoint (broadcast), and sum of squares.
//
// Both ops first coalesce the shape (kernels/shape_walk.h, shared with the CUDA kernels):
// size-1 axes are dropped and neighbouring axes with the same flag merged, so [B, T, E]
// reducing {B, T} becomes [B·T | E] and any axis set becomes alternating kept/reduced groups.
// Three layouts remain for reduce_sum:
//   - everything reduced: a flat sum, in fixed-size chunks added in chunk order;
//   - last group reduced (e.g. [rows | dim]): one contiguous inner sum per output;
//   - last group kept (e.g. a bias gradient [B·T | E]): each output column block gathers
//     over the reduced rows into a double accumulator, so the reads stay contiguous.
// Every output is summed in an order fixed by the shape alone, so results are identical for
// any thread count. Accumulation is in double (see reduce.h).
#include "kernels/cpu/reduce.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "core/check.h"
#include "kernels/shape_walk.h"

namespace autosp::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements before threads pay off
constexpr int64_t kChunk = 1 << 16;        // flat-sum chunk; fixed so the sum order is too
constexpr int64_t kColBlock = 256;         // output columns per task in the "last kept" layout

using Axis = shape_walk::ReduceGroup;
using shape_walk::coalesce;
using shape_walk::product;

// Walks every index combination of `axes` in row-major order, tracking the x offset.
class Odometer {
 public:
  explicit Odometer(std::vector<Axis> axes) : axes_(std::move(axes)), coord_(axes_.size(), 0) {}
  int64_t count() const {
    int64_t n = 1;
    for (const Axis& a : axes_) n *= a.size;
    return n;
  }
  int64_t offset() const { return offset_; }
  void next() {
    for (size_t k = axes_.size(); k-- > 0;) {
      offset_ += axes_[k].stride;
      if (++coord_[k] < axes_[k].size) return;
      offset_ -= axes_[k].size * axes_[k].stride;
      coord_[k] = 0;
    }
  }

 private:
  std::vector<Axis> axes_;
  std::vector<int64_t> coord_;
  int64_t offset_ = 0;
};

// x offset of the flat index i over `axes` (row-major).
int64_t offset_of(int64_t i, const std::vector<Axis>& axes) {
  int64_t off = 0;
  for (size_t k = axes.size(); k-- > 0;) {
    off += (i % axes[k].size) * axes[k].stride;
    i /= axes[k].size;
  }
  return off;
}

std::vector<Axis> select(const std::vector<Axis>& axes, bool reduced, size_t end) {
  std::vector<Axis> out;
  for (size_t k = 0; k < end; ++k)
    if (axes[k].reduced == reduced) out.push_back(axes[k]);
  return out;
}

// Σ f(x[i]) in chunks of kChunk, chunk sums added in chunk order.
template <class F>
double chunked_sum(const float* x, int64_t n, F f) {
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(n_chunks, 0.0);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = c * kChunk; i < end; ++i) s += f(static_cast<double>(x[i]));
    part[c] = s;
  }
  double total = 0.0;
  for (double p : part) total += p;
  return total;
}

}  // namespace

void reduce_sum(const float* x, float* out, const std::vector<int64_t>& shape, const std::vector<bool>& reduce,
                float scale) {
  shape_walk::check_reduce_shape("reduce_sum", shape, reduce);
  const int64_t n_out = product(shape, reduce, false);
  const int64_t n_red = product(shape, reduce, true);
  const int64_t n = n_out * n_red;
  if (n_red == 0) {  // empty sum
    std::fill(out, out + n_out, 0.0f);
    return;
  }
  if (n_out == 0) return;
  const std::vector<Axis> axes = coalesce(shape, reduce);
  const double s = scale;

  if (axes.empty()) {  // every axis has size 1
    out[0] = static_cast<float>(s * x[0]);
  } else if (axes.size() == 1 && axes[0].reduced) {
    out[0] = static_cast<float>(s * chunked_sum(x, n, [](double v) { return v; }));
  } else if (axes.back().reduced) {
    const int64_t inner = axes.back().size;
    const std::vector<Axis> kept = select(axes, false, axes.size());
    const std::vector<Axis> outer_red = select(axes, true, axes.size() - 1);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t o = 0; o < n_out; ++o) {
      const float* base = x + offset_of(o, kept);
      Odometer red(outer_red);
      double acc = 0.0;
      for (int64_t r = red.count(); r > 0; --r, red.next()) {
        const float* row = base + red.offset();
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < inner; ++j) acc += row[j];
      }
      out[o] = static_cast<float>(s * acc);
    }
  } else {
    const int64_t cols = axes.back().size;
    const std::vector<Axis> outer_kept = select(axes, false, axes.size() - 1);
    const std::vector<Axis> red_axes = select(axes, true, axes.size());
    const int64_t n_blocks = (cols + kColBlock - 1) / kColBlock;
    const int64_t n_tasks = (n_out / cols) * n_blocks;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
    for (int64_t task = 0; task < n_tasks; ++task) {
      const int64_t p = task / n_blocks;
      const int64_t c0 = (task % n_blocks) * kColBlock;
      const int64_t width = std::min(kColBlock, cols - c0);
      const float* base = x + offset_of(p, outer_kept) + c0;
      double acc[kColBlock] = {};
      Odometer red(red_axes);
      for (int64_t r = red.count(); r > 0; --r, red.next()) {
        const float* row = base + red.offset();
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) acc[j] += row[j];
      }
      float* o = out + p * cols + c0;
      for (int64_t j = 0; j < width; ++j) o[j] = static_cast<float>(s * acc[j]);
    }
  }
}

void broadcast(const float* x, float* out, const std::vector<int64_t>& shape, const std::vector<bool>& reduce,
               float scale) {
  shape_walk::check_reduce_shape("broadcast", shape, reduce);
  const int64_t n = product(shape, reduce, false) * product(shape, reduce, true);
  if (n == 0) return;
  std::vector<Axis> axes = coalesce(shape, reduce);
  if (axes.empty()) {
    out[0] = x[0] * scale;
    return;
  }
  shape_walk::restride_for_broadcast(axes);  // x is compact: reduced axes get stride 0
  const Axis last = axes.back();
  axes.pop_back();
  const int64_t rows = n / last.size;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t q = 0; q < rows; ++q) {
    const float* src = x + offset_of(q, axes);
    float* dst = out + q * last.size;
    if (last.reduced) {
      const float v = src[0] * scale;
#pragma omp simd
      for (int64_t j = 0; j < last.size; ++j) dst[j] = v;
    } else {
#pragma omp simd
      for (int64_t j = 0; j < last.size; ++j) dst[j] = src[j] * scale;
    }
  }
}

double sum_squares(const float* x, int64_t n) {
  AUTOSP_CHECK(n >= 0) << "sum_squares: n = " << n;
  return chunked_sum(x, n, [](double v) { return v * v; });
}

}  // namespace autosp::kernels::cpu
