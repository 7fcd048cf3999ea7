// autodiff: reverse-mode differentiation as a graph rewrite. From the scalar graph output
// "loss" it appends the backward using each op's VJP rule from the registry (no
// hand-written backward anywhere) and adds an output "grad.<param>" for every parameter.
// The seed d(loss) enters as an input argument "d_loss" (f32 scalar), which the runtime sets
// to 1 — or to a loss scale, or 1/microbatches — without recompiling. In an SPMD program
// every rank holds the same loss, and cotangents are per-rank partial sums, so the seed is
// 1/world on each rank (see ir/ops_collective.cc).
#pragma once
#include <memory>
#include <vector>

#include "sp_compiler/pass.h"

namespace autosp::sp {

inline constexpr const char* kLossOutput = "loss";
inline constexpr const char* kLossSeedInput = "d_loss";
inline constexpr const char* kGradPrefix = "grad.";

// world_size > 1 (after shard_sequence): a Replicate parameter read by per-rank activations
// is an implicit broadcast, so its gradient is all-reduced over the world.
std::unique_ptr<Pass> make_autodiff_pass(int world_size = 1);

// Per node of a differentiated graph: whether it is in the backward phase, which starts at the
// first node that depends on the loss seed (everything after it — recompute's re-run forward
// nodes included — runs in backward).
std::vector<bool> backward_phase(const ir::Graph& g, ir::ValueId seed);

}  // namespace autosp::sp
