// Structural checks on a Graph, run by the pass pipeline before and after every pass
// (DESIGN.md section 4): SSA (each value defined once, by an argument or one node result,
// and defined before any use), unique non-empty argument names, unique output names that
// refer to defined values, each node's arity, attribute struct and result count as the
// registry says, each result's type as the op's inference rule computes it, and shardings
// whose dimension exists.
//
// Values that are in Graph::values but neither defined nor used are allowed: a pass may
// delete nodes without compacting the value table.
//
// Errors name the node by its printed line and the operand, e.g.
//   verify: node '%5 = add(%3, %9) : f32[2,4]': operand 1 (%9) is used before it is defined
#pragma once
#include "core/status.h"
#include "ir/graph.h"

namespace autosp::ir {

Status verify(const Graph& g);

}  // namespace autosp::ir
