// Axis permutation for any rank and element size (2, 4 or 8 bytes: bf16, fp32, fp64/int64).
//
// The permutation is first simplified: size-1 axes are dropped and output axes that are
// consecutive in x as well (perm[i+1] == perm[i] + 1) are merged, so [B,T,H,D] → [B,H,T,D]
// becomes a 4-d walk with a contiguous inner run of D, and an identity permutation becomes
// one flat copy. The output is then written row by row along its last (merged) axis, which
// is contiguous in `out`; reads along that row are contiguous when the last x axis stays
// last, strided otherwise.
// Elements are moved as raw bits via memcpy of a fixed size (a plain load/store after
// optimisation), so the kernel is type-agnostic and free of strict-aliasing problems.
#include "kernels/cpu/layout.h"

#include <cstring>
#include <vector>

#include "core/check.h"

namespace autosp::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements before threads pay off

struct Axis {
  int64_t size;
  int64_t x_stride;  // elements
};

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
  const size_t rank = shape.size();
  AUTOSP_CHECK(perm.size() == rank) << "permute: perm has " << perm.size() << " axes, shape has " << rank;
  std::vector<bool> seen(rank, false);
  for (int p : perm) {
    AUTOSP_CHECK(p >= 0 && static_cast<size_t>(p) < rank && !seen[p]) << "permute: perm is not a permutation";
    seen[p] = true;
  }
  AUTOSP_CHECK(elem_bytes == 2 || elem_bytes == 4 || elem_bytes == 8) << "permute: elem_bytes = " << elem_bytes;

  std::vector<int64_t> x_stride(rank, 1);
  int64_t n = 1;
  for (size_t d = rank; d-- > 0;) {
    AUTOSP_CHECK(shape[d] >= 0) << "permute: negative axis size " << shape[d];
    x_stride[d] = n;
    n *= shape[d];
  }
  if (n == 0) return;

  // Output axes in order, with size-1 axes dropped and x-consecutive neighbours merged.
  std::vector<Axis> axes;
  int prev = -2;  // x axis of the previous kept output axis
  for (size_t i = 0; i < rank; ++i) {
    const int a = perm[i];
    if (shape[a] == 1) continue;
    // Mergeable when this axis directly follows the previous one in x, skipping only
    // size-1 x axes in between (they contribute nothing to the layout).
    bool follows = prev >= 0 && a > prev;
    for (int k = prev + 1; follows && k < a; ++k) follows = shape[k] == 1;
    if (follows) {
      axes.back().size *= shape[a];
      axes.back().x_stride = x_stride[a];
    } else {
      axes.push_back({shape[a], x_stride[a]});
    }
    prev = a;
  }
  if (axes.empty()) axes.push_back({1, 1});  // all axes size 1: one element
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

namespace {
// Rows before the axis, and bytes of one index step along it (everything after the axis).
std::pair<int64_t, int64_t> outer_inner(const std::vector<int64_t>& shape, int axis, int64_t elem_bytes) {
  int64_t outer = 1, inner = elem_bytes;
  for (int d = 0; d < axis; ++d) outer *= shape[d];
  for (size_t d = size_t(axis) + 1; d < shape.size(); ++d) inner *= shape[d];
  return {outer, inner};
}
}  // namespace

void split(const void* x, const std::vector<void*>& parts, const std::vector<int64_t>& shape, int axis,
           const std::vector<int64_t>& sizes, int64_t elem_bytes) {
  const auto [outer, inner] = outer_inner(shape, axis, elem_bytes);
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
  const auto [outer, inner] = outer_inner(shape, axis, elem_bytes);
  const int64_t row = shape[size_t(axis)] * inner;
#pragma omp parallel for if (outer > 64)
  for (int64_t o = 0; o < outer; ++o) {
    char* dst = static_cast<char*>(out) + o * row;
    for (size_t k = 0; k < parts.size(); ++k) {
      std::memcpy(dst, static_cast<const char*>(parts[k]) + o * sizes[k] * inner, size_t(sizes[k] * inner));
      dst += sizes[k] * inner;
    }
  }
}

}  // namespace autosp::kernels::cpu
