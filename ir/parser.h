// Reads the text form written by ir/printer.h back into a Graph. Arguments are created
// first, then every node goes through Graph::add_node, so shape inference runs exactly as
// when a model builds the graph; each declared result type must equal the inferred one.
//
// Beyond what the printer writes, hand-written text (golden tests) may name node results
// freely (%q instead of %3), omit attributes that keep their default, wrap lines anywhere,
// and use `//` comments to the end of a line.
//
// Errors name the position and what was expected: "line 3:17: expected ')', got 'foo'".
#pragma once
#include <string_view>

#include "core/status.h"
#include "ir/graph.h"

namespace autosp::ir {

StatusOr<Graph> parse(std::string_view text);

}  // namespace autosp::ir
