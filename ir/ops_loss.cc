// cross_entropy(h [..., D], w [V, D], targets [...] i32) -> loss_sum [], count [], lse [...]
// The LM head is fused in, and the kernels walk the vocabulary in chunks, so [tokens, V]
// logits never exist. Returning (sum, count) instead of a mean lets sequence parallelism
// all-reduce both before dividing; count and lse carry no gradient.
#include "ir/op_rules.h"

namespace autosp::ir::rules {

namespace {
Status check_loss_operands(const Graph& g, const Node& n) {
  const auto& h = g.type(n.inputs[0]);
  const auto& w = g.type(n.inputs[1]);
  const auto& t = g.type(n.inputs[2]);
  RETURN_IF_ERROR(expect(is_float(h.dtype) && h.shape.rank() >= 2, g, n, 0, "float hidden states [..., dim]"));
  RETURN_IF_ERROR(expect(w.dtype == h.dtype && w.shape.rank() == 2 && w.shape[1] == h.shape[-1], g, n, 1,
                         std::string(dtype_name(h.dtype)) + " [vocab, " + std::to_string(h.shape[-1]) + "]"));
  std::vector<int64_t> td(h.shape.dims().begin(), h.shape.dims().end() - 1);
  RETURN_IF_ERROR(expect(t == TensorType{DType::i32, Shape(td)}, g, n, 2, "i32 targets " + Shape(td).str()));
  RETURN_IF_ERROR(expect(std::get<CrossEntropyAttrs>(n.attrs).chunk > 0, g, n, 0, "attribute chunk > 0"));
  return Status::Ok();
}
}  // namespace

Status infer_cross_entropy(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_loss_operands(g, n));
  TensorType scalar{DType::f32, Shape{}};
  out = {scalar, scalar, {DType::f32, g.type(n.inputs[2]).shape}};
  return Status::Ok();
}

// cross_entropy_backward(h, w, targets, lse, d_loss_sum) -> dh, dw
Status infer_cross_entropy_backward(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_loss_operands(g, n));
  RETURN_IF_ERROR(expect(g.type(n.inputs[3]) == TensorType{DType::f32, g.type(n.inputs[2]).shape}, g, n, 3,
                         "f32 log-sum-exp shaped like the targets"));
  RETURN_IF_ERROR(expect(g.type(n.inputs[4]) == TensorType{DType::f32, Shape{}}, g, n, 4, "an f32 scalar"));
  out = {g.type(n.inputs[0]), g.type(n.inputs[1])};
  return Status::Ok();
}

Status vjp_cross_entropy(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                         std::vector<ValueId>& ig) {
  AUTOSP_CHECK(og[1] == kNoValue && og[2] == kNoValue) << "count and lse are registered as non-differentiable";
  auto d = b.op(Op::cross_entropy_backward, {n.inputs[0], n.inputs[1], n.inputs[2], n.outputs[2], og[0]}, n.attrs);
  ig[0] = d[0];
  ig[1] = d[1];
  return Status::Ok();
}

}  // namespace autosp::ir::rules
