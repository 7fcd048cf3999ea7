// lower: Graph -> Program. Removes nodes that feed no output, turns reshapes into views,
// binds arguments and outputs to named external slots, and places every other value in one
// arena at offsets chosen from liveness (first fit over lifetimes in instruction order), so
// the executor allocates exactly `arena_bytes` once.
#pragma once
#include "core/status.h"
#include "ir/graph.h"
#include "ir/program.h"

namespace autosp::sp {

StatusOr<ir::Program> lower(const ir::Graph& g);

}  // namespace autosp::sp
