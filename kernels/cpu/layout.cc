// Axis permutation for any rank and element size (2, 4 or 8 bytes: bf16, fp32, fp64/int64).
//
// The permutation is first simplified (kernels/shape_walk.h, shared with the CUDA kernel):
// size-1 axes are dropped and output axes that are consecutive in x as well (perm[i+1] ==
// perm[i] + 1) are merged, so [B,T,H,D] → [B,H,T,D] becomes a 4-d walk with a contiguous
// inner run of D, and an identity permutation becomes one flat copy. The output is then written row by row along its last (merged) axis, which
// is contiguous in `out`; reads along that row are contiguous when the last x axis stays
// last, strided otherwise.
// Elements are moved as raw bits via memcpy of a fixed size (a plain load/store after
// optimisation), so the kernel is type-agnostic and free of strict-aliasing problems.
#include "kernels/cpu/layout.h"

#include <cstring>
#include <vector>

#include "core/check.h"
#include "kernels/shape_walk.h"

namespace autosp::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements before threads pay off

using Axis = shape_walk::PermuteAxis;

template <class T>
void permute_rows(const char* x, char* out, const std::vector<Axis>& outer, Axis last, int64_t n) {
  const int64_t rows = n / last.size;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t q = 0; q < rows; ++q) {
    int64_t src = 0;
    for (int64_t i = q, k = static_cast<int64_t>(outer.size()) - 1; k >= 0; --k) {
      src += (i % outer[k].size) * outer[k].x_stride;
      i /= outer[k].size;
    }
    const char* s = x + src * static_cast<int64_t>(sizeof(T));
    char* d = out + q * last.size * static_cast<int64_t>(sizeof(T));
    if (last.x_stride == 1) {
      std::memcpy(d, s, last.size * sizeof(T));
    } else {
      const int64_t step = last.x_stride * static_cast<int64_t>(sizeof(T));
      for (int64_t j = 0; j < last.size; ++j) std::memcpy(d + j * sizeof(T), s + j * step, sizeof(T));
    }
  }
}

}  // namespace

void permute(const float* x, float* out, const std::vector<int64_t>& shape, const std::vector<int>& perm,
             int64_t elem_bytes) {
  // Output axes in order, with size-1 axes dropped and x-consecutive neighbours merged.
  shape_walk::PermuteWalk walk = shape_walk::permute_walk(shape, perm, elem_bytes);
  const int64_t n = walk.n;
  if (n == 0) return;
  std::vector<Axis>& axes = walk.axes;
  const Axis last = axes.back();
  axes.pop_back();

  const char* src = reinterpret_cast<const char*>(x);
  char* dst = reinterpret_cast<char*>(out);
  switch (elem_bytes) {
    case 2: return permute_rows<uint16_t>(src, dst, axes, last, n);
    case 4: return permute_rows<uint32_t>(src, dst, axes, last, n);
    case 8: return permute_rows<uint64_t>(src, dst, axes, last, n);
  }
}

void split(const void* x, const std::vector<void*>& parts, const std::vector<int64_t>& shape, int axis,
           const std::vector<int64_t>& sizes, int64_t elem_bytes) {
  const auto [outer, inner] = shape_walk::outer_inner(shape, axis, elem_bytes);
  const int64_t row = shape[size_t(axis)] * inner;
#pragma omp parallel for if (outer > 64)
  for (int64_t o = 0; o < outer; ++o) {
    const char* src = static_cast<const char*>(x) + o * row;
    for (size_t k = 0; k < parts.size(); ++k) {
      std::memcpy(static_cast<char*>(parts[k]) + o * sizes[k] * inner, src, size_t(sizes[k] * inner));
      src += sizes[k] * inner;
    }
  }
}

void concat(const std::vector<const void*>& parts, void* out, const std::vector<int64_t>& shape, int axis,
            const std::vector<int64_t>& sizes, int64_t elem_bytes) {
  const auto [outer, inner] = shape_walk::outer_inner(shape, axis, elem_bytes);
  const int64_t row = shape[size_t(axis)] * inner;
#pragma omp parallel for if (outer > 64)
  for (int64_t o = 0; o < outer; ++o) {
    char* dst = static_cast<char*>(out) + o * row;
    for (size_t k = 0; k < parts.size(); ++k) {
      // A part already in its place (written there by its producer: sp_compiler/lower.cc) is not copied.
      const char* src = static_cast<const char*>(parts[k]) + o * sizes[k] * inner;
      if (src != dst) std::memcpy(dst, src, size_t(sizes[k] * inner));
      dst += sizes[k] * inner;
    }
  }
}

}  // namespace autosp::kernels::cpu
