// Data movement: axis permutation (out[..] = x permuted so out axis i is x axis perm[i]).
#pragma once
#include <cstdint>
#include <vector>

namespace autosp::kernels::cpu {

void permute(const float* x, float* out, const std::vector<int64_t>& shape, const std::vector<int>& perm,
             int64_t elem_bytes = 4);

}  // namespace autosp::kernels::cpu
