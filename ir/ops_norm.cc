// rms_norm(x, g) and layer_norm(x, g, b) over the last axis, and their backward ops, which
// recompute the row statistics from x rather than keeping them alive from the forward.
#include "ir/op_rules.h"

namespace autosp::ir::rules {

namespace {
Status check_norm_operands(const Graph& g, const Node& n, int n_affine) {
  const auto& x = g.type(n.inputs[0]);
  RETURN_IF_ERROR(expect(is_float(x.dtype) && x.shape.rank() >= 1, g, n, 0, "a float tensor of rank >= 1"));
  // The affine weights may be of another float type than x (f32 parameters in a bf16 program).
  const DType wt = g.type(n.inputs[1]).dtype;
  const TensorType vec{is_float(wt) ? wt : DType::f32, Shape{x.shape[-1]}};
  for (int i = 1; i <= n_affine; ++i)
    RETURN_IF_ERROR(expect(g.type(n.inputs[i]) == vec, g, n, i, vec.str() + " (the last axis of operand 0)"));
  return Status::Ok();
}
}  // namespace

Status infer_rms_norm(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_norm_operands(g, n, 1));
  out = {g.type(n.inputs[0])};
  return Status::Ok();
}

Status infer_layer_norm(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_norm_operands(g, n, 2));
  out = {g.type(n.inputs[0])};
  return Status::Ok();
}

// rms_norm_backward(x, g, dy) -> dx, dg
Status infer_rms_norm_backward(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_norm_operands(g, n, 1));
  RETURN_IF_ERROR(expect(g.type(n.inputs[2]) == g.type(n.inputs[0]), g, n, 2, "the type of operand 0"));
  out = {g.type(n.inputs[0]), g.type(n.inputs[1])};
  return Status::Ok();
}

// layer_norm_backward(x, g, dy) -> dx, dg, db
Status infer_layer_norm_backward(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_norm_operands(g, n, 1));
  RETURN_IF_ERROR(expect(g.type(n.inputs[2]) == g.type(n.inputs[0]), g, n, 2, "the type of operand 0"));
  out = {g.type(n.inputs[0]), g.type(n.inputs[1]), g.type(n.inputs[1])};
  return Status::Ok();
}

Status vjp_rms_norm(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                    std::vector<ValueId>& ig) {
  auto d = b.op(Op::rms_norm_backward, {n.inputs[0], n.inputs[1], og[0]}, n.attrs);
  ig[0] = d[0];
  ig[1] = d[1];
  return Status::Ok();
}

Status vjp_layer_norm(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                      std::vector<ValueId>& ig) {
  auto d = b.op(Op::layer_norm_backward, {n.inputs[0], n.inputs[1], og[0]}, n.attrs);
  ig = {d[0], d[1], d[2]};
  return Status::Ok();
}

}  // namespace autosp::ir::rules
