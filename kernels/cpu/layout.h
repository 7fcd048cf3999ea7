// Data movement: axis permutation (out[..] = x permuted so out axis i is x axis perm[i]), and
// split / concatenation along one axis.
#pragma once
#include <cstdint>
#include <vector>

namespace autosp::kernels::cpu {

void permute(const float* x, float* out, const std::vector<int64_t>& shape, const std::vector<int>& perm,
             int64_t elem_bytes = 4);

// x (full `shape`) cut along `axis` into parts of extents `sizes` (summing to shape[axis]).
void split(const void* x, const std::vector<void*>& parts, const std::vector<int64_t>& shape, int axis,
           const std::vector<int64_t>& sizes, int64_t elem_bytes);
// The inverse: parts joined along `axis` into out (full `shape`).
void concat(const std::vector<const void*>& parts, void* out, const std::vector<int64_t>& shape, int axis,
            const std::vector<int64_t>& sizes, int64_t elem_bytes);

}  // namespace autosp::kernels::cpu
