// fuse_accumulate: folds `add(x, m)` / `add(m, x)`, where m is the result of a plain
// (2-operand) matmul that nothing else reads and that is no graph output, into one matmul with
// x as its accumulated third operand (C = op(A)·op(B) + X: BLAS / cuBLASLt beta = 1). That is
// every residual add of a transformer block and every backward sum of matmul results (dX of
// the Q/K/V or gate/up projections), each an activation-sized kernel that read two tensors
// and wrote one. x must have m's dtype and shape (no broadcasting). A chain
// add(add(m1, m2), m3) folds as far as the rule allows: m2 accumulates onto m1, m3 onto that.
//
// The fused GEMM sits at the matmul's place when x is computed by then, so x is read no later
// than the add read it and no tensor lives longer; otherwise (or when x is a collective's
// result, whose wait would move earlier) at the add's place. Where x dies at the GEMM, lower
// accumulates in place over it. Runs last, after recompute and zero_shard, so every copy of a
// recomputed add folds the same way as the original, in every configuration alike.
#pragma once
#include <memory>

#include "sp_compiler/pass.h"

namespace autosp::sp {

std::unique_ptr<Pass> make_fuse_accumulate_pass();

}  // namespace autosp::sp
