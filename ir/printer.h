// The IR's text form (DESIGN.md section 3), e.g.
//
//   graph @tiny(%x: f32[2,4] input, %w: f32[4,4]{S:rep} param normal(0.02)) {
//     %0 = matmul(%x, %w) {trans_a=false, trans_b=true} : f32[2,4]
//     return y=%0
//   }
//
// Arguments keep their names; node results are renumbered %0, %1, ... in order of definition,
// so the text does not depend on internal value ids and passes can be tested against golden
// text. ir/parser.h reads it back: print(parse(print(g))) == print(g).
#pragma once
#include <string>

#include "ir/graph.h"

namespace autosp::ir {

// The whole graph, ending in "}\n".
std::string print(const Graph& g);
// One node on one line, without indentation: for error messages. Never fails, even on a
// malformed graph: values with no definition print as %?ID.
std::string print_node(const Graph& g, const Node& n);
// How `v` appears in print(g): "%x" for an argument, "%3" for a node result, "%?ID" when
// nothing defines it.
std::string print_value_name(const Graph& g, ValueId v);
// "f32[2,4]" followed by the sharding annotation ("{S:shard(1)}") when it is not none.
std::string print_type(const TensorType& t, const Sharding& s);
// The shortest decimal text that reads back as exactly `f` ("0.02", "1e-05", "inf").
std::string print_float(float f);

}  // namespace autosp::ir
