// autodiff: reverse-mode differentiation as a graph rewrite. From the scalar graph output
// "loss" it appends the backward using each op's VJP rule from the registry (no
// hand-written backward anywhere) and adds an output "grad.<param>" for every parameter.
// The seed d(loss) enters as an input argument "d_loss" (f32 scalar), which the runtime sets
// to 1 — or to a loss scale, or 1/microbatches — without recompiling.
#pragma once
#include <memory>

#include "sp_compiler/pass.h"

namespace autosp::sp {

inline constexpr const char* kLossOutput = "loss";
inline constexpr const char* kLossSeedInput = "d_loss";
inline constexpr const char* kGradPrefix = "grad.";

std::unique_ptr<Pass> make_autodiff_pass();

}  // namespace autosp::sp
