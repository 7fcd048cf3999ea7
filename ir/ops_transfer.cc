// offload(x) -> h: x's bytes copied to host memory; fetch(h) -> x': copied back to the device.
// Both are the identity on values (so is their VJP: a copy's adjoint is a copy); where the
// bytes live is the lowering's business (sp_compiler/lower.cc puts every offload result in
// the host arena). The offload_activations pass inserts them after autodiff, so a model
// never writes them.
#include "ir/op_rules.h"

namespace autosp::ir {

bool is_transfer(Op op) { return op == Op::offload || op == Op::fetch; }

namespace rules {

namespace {
Status same_as_input(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  out = {g.type(n.inputs[0])};
  return Status::Ok();
}
}  // namespace

Status infer_offload(const Graph& g, const Node& n, std::vector<TensorType>& out) { return same_as_input(g, n, out); }

// (lower.cc checks that a fetch reads an offload's result.)
Status infer_fetch(const Graph& g, const Node& n, std::vector<TensorType>& out) { return same_as_input(g, n, out); }

Status vjp_offload(Builder&, const Node&, const std::vector<ValueId>& og, const std::vector<bool>&,
                   std::vector<ValueId>& ig) {
  ig[0] = og[0];
  return Status::Ok();
}

Status vjp_fetch(Builder&, const Node&, const std::vector<ValueId>& og, const std::vector<bool>&,
                 std::vector<ValueId>& ig) {
  ig[0] = og[0];
  return Status::Ok();
}

}  // namespace rules
}  // namespace autosp::ir
