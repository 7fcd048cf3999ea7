// The scratch of the CUDA norm backward (norm.cu): the row statistics, and fp32 partial sums
// of dg (and db) per slice of rows. No CUDA here, so --plan (trainer/plan_report.cc) sizes it
// on machines built without CUDA from the same numbers the kernels use.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace autosp::kernels::cuda {

inline constexpr int64_t kNormSliceRows = 1024;  // rows per parameter-gradient slice, at most
inline constexpr int64_t kNormMaxSlices = 256;

inline int64_t norm_param_slices(int64_t rows) {
  return std::min(kNormMaxSlices, std::max<int64_t>(1, (rows + kNormSliceRows - 1) / kNormSliceRows));
}

// (mean,) 1/std per row; dg (and db) partials per slice.
inline size_t norm_backward_scratch_bytes(int64_t rows, int64_t dim, bool layer_norm) {
  const int64_t per = layer_norm ? 2 : 1;
  return sizeof(float) * size_t(per * rows + per * norm_param_slices(rows) * dim);
}

}  // namespace autosp::kernels::cuda
