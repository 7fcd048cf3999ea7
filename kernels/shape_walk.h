// Host-side shape simplification shared by the CPU kernels (kernels/cpu) and the CUDA kernels
// (kernels/cuda): what reduce_sum / broadcast and permute / split / concat do to a shape before
// any element moves. Pure functions of the sizes, header-only, C++17 and free of device code,
// so nvcc compiles it for the .cu files too: both backends walk the same simplified shapes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/check.h"

namespace autosp::kernels::shape_walk {

// ---- reductions (reduce_sum, broadcast): `shape` is the full shape, reduce[d] marks reduced axes.

// One group of neighbouring axes with the same flag.
struct ReduceGroup {
  int64_t size;
  bool reduced;
  int64_t stride;  // in x's full layout, elements
};

// shape and reduce agree, no axis size is negative, and (max_rank ≥ 0) the rank is at most
// max_rank.
inline void check_reduce_shape(const char* op, const std::vector<int64_t>& shape, const std::vector<bool>& reduce,
                               int max_rank = -1) {
  AUTOSP_CHECK(shape.size() == reduce.size())
      << op << ": shape has " << shape.size() << " axes, reduce has " << reduce.size();
  AUTOSP_CHECK(max_rank < 0 || shape.size() <= size_t(max_rank)) << op << ": rank " << shape.size() << " > " << max_rank;
  for (int64_t s : shape) AUTOSP_CHECK(s >= 0) << op << ": negative axis size " << s;
}

// Drops size-1 axes and merges same-flag neighbours, so any axis set becomes alternating kept /
// reduced groups ([B, T, E] reducing {B, T} is [B·T | E]). Strides are of the full layout.
inline std::vector<ReduceGroup> coalesce(const std::vector<int64_t>& shape, const std::vector<bool>& reduce) {
  std::vector<ReduceGroup> groups;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!groups.empty() && groups.back().reduced == reduce[d])
      groups.back().size *= shape[d];
    else
      groups.push_back({shape[d], reduce[d], 0});
  }
  int64_t stride = 1;
  for (auto it = groups.rbegin(); it != groups.rend(); ++it) {
    it->stride = stride;
    stride *= it->size;
  }
  return groups;
}

// Π of the axis sizes whose flag is of_reduced (1 when there are none).
inline int64_t product(const std::vector<int64_t>& shape, const std::vector<bool>& reduce, bool of_reduced) {
  int64_t n = 1;
  for (size_t d = 0; d < shape.size(); ++d)
    if (reduce[d] == of_reduced) n *= shape[d];
  return n;
}

// Re-strides coalesced groups for broadcast's input, x's compact (kept-only) layout: reduced
// groups get stride 0, which is what broadcasting means.
inline void restride_for_broadcast(std::vector<ReduceGroup>& groups) {
  int64_t stride = 1;
  for (auto it = groups.rbegin(); it != groups.rend(); ++it) {
    it->stride = it->reduced ? 0 : stride;
    if (!it->reduced) stride *= it->size;
  }
}

// ---- permute: out axis i is x axis perm[i].

struct PermuteAxis {
  int64_t size;
  int64_t x_stride;  // elements
};

struct PermuteWalk {
  int64_t n = 1;                  // elements
  std::vector<PermuteAxis> axes;  // the output's axes in order, simplified (never empty)
};

// Checks the arguments (rank ≤ max_rank when max_rank ≥ 0, perm a permutation of the axes,
// elem_bytes 2, 4 or 8, no negative size), then simplifies: size-1 axes are dropped and output
// axes that are consecutive in x as well are merged (consecutive up to size-1 x axes in between,
// which add nothing to the layout), so [B,T,H,D] → [B,H,T,D] becomes a walk with a contiguous
// inner run of D and the identity one flat axis of stride 1. All axes of size 1: one axis {1, 1}.
inline PermuteWalk permute_walk(const std::vector<int64_t>& shape, const std::vector<int>& perm, int64_t elem_bytes,
                                int max_rank = -1) {
  const size_t rank = shape.size();
  AUTOSP_CHECK(max_rank < 0 || rank <= size_t(max_rank)) << "permute: rank " << rank << " > " << max_rank;
  AUTOSP_CHECK(perm.size() == rank) << "permute: perm has " << perm.size() << " axes, shape has " << rank;
  std::vector<bool> seen(rank, false);
  for (int p : perm) {
    AUTOSP_CHECK(p >= 0 && size_t(p) < rank && !seen[size_t(p)]) << "permute: perm is not a permutation";
    seen[size_t(p)] = true;
  }
  AUTOSP_CHECK(elem_bytes == 2 || elem_bytes == 4 || elem_bytes == 8) << "permute: elem_bytes = " << elem_bytes;

  PermuteWalk w;
  std::vector<int64_t> x_stride(rank, 1);
  for (size_t d = rank; d-- > 0;) {
    AUTOSP_CHECK(shape[d] >= 0) << "permute: negative axis size " << shape[d];
    x_stride[d] = w.n;
    w.n *= shape[d];
  }
  int prev = -2;  // x axis of the previous kept output axis
  for (size_t i = 0; i < rank; ++i) {
    const int a = perm[i];
    if (shape[size_t(a)] == 1) continue;
    bool follows = prev >= 0 && a > prev;
    for (int k = prev + 1; follows && k < a; ++k) follows = shape[size_t(k)] == 1;
    if (follows) {
      w.axes.back().size *= shape[size_t(a)];
      w.axes.back().x_stride = x_stride[size_t(a)];
    } else {
      w.axes.push_back({shape[size_t(a)], x_stride[size_t(a)]});
    }
    prev = a;
  }
  if (w.axes.empty()) w.axes.push_back({1, 1});
  return w;
}

// ---- split / concat along one axis.

// Rows before the axis, and bytes of one index step along it (everything after the axis).
inline std::pair<int64_t, int64_t> outer_inner(const std::vector<int64_t>& shape, int axis, int64_t elem_bytes) {
  int64_t outer = 1, inner = elem_bytes;
  for (int d = 0; d < axis; ++d) outer *= shape[size_t(d)];
  for (size_t d = size_t(axis) + 1; d < shape.size(); ++d) inner *= shape[d];
  return {outer, inner};
}

}  // namespace autosp::kernels::shape_walk
