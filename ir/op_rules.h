// Shape-inference and VJP rules, one ops_<family>.cc file per op family; registry.cc
// collects them into the op table. Internal to ir/.
#pragma once
#include <string>
#include <vector>

#include "ir/builder.h"
#include "ir/registry.h"

namespace autosp::ir::rules {

// "matmul operand 1 (f32[64,32]): expected ..." — names the op, the operand and its type.
Status operand_error(const Graph& g, const Node& n, int operand, const std::string& expected);
inline Status expect(bool ok, const Graph& g, const Node& n, int operand, const std::string& expected) {
  return ok ? Status::Ok() : operand_error(g, n, operand, expected);
}
// Sum `g` over the leading axes so it has `target`'s shape (the adjoint of suffix broadcasting).
ValueId reduce_to(Builder& b, ValueId g, const Shape& target);

#define AUTOSP_DECLARE_RULES(name)                                                        \
  Status infer_##name(const Graph&, const Node&, std::vector<TensorType>&);              \
  Status vjp_##name(Builder&, const Node&, const std::vector<ValueId>&, const std::vector<bool>&, \
                    std::vector<ValueId>&);
AUTOSP_OPS(AUTOSP_DECLARE_RULES)
#undef AUTOSP_DECLARE_RULES

}  // namespace autosp::ir::rules
