// Elementwise ops: binary arithmetic with suffix broadcasting of the second operand (a bias
// [E] over [B, T, E], a scalar [] over anything), scale, and the activations.
#include "ir/op_rules.h"

namespace autosp::ir::rules {

namespace {

bool is_suffix(const Shape& small, const Shape& big) {
  if (small.rank() > big.rank()) return false;
  for (int i = 1; i <= small.rank(); ++i)
    if (small[-i] != big[-i]) return false;
  return true;
}

Status infer_binary(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& a = g.type(n.inputs[0]);
  const auto& b = g.type(n.inputs[1]);
  RETURN_IF_ERROR(expect(is_float(a.dtype), g, n, 0, "f32 or bf16"));
  RETURN_IF_ERROR(expect(b.dtype == a.dtype && is_suffix(b.shape, a.shape), g, n, 1,
                         std::string(dtype_name(a.dtype)) + " with a shape that is a suffix of " + a.shape.str()));
  out = {a};
  return Status::Ok();
}

Status infer_same_as_first(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& x = g.type(n.inputs[0]);
  RETURN_IF_ERROR(expect(is_float(x.dtype), g, n, 0, "f32 or bf16"));
  for (size_t i = 1; i < n.inputs.size(); ++i)
    RETURN_IF_ERROR(expect(g.type(n.inputs[i]) == x, g, n, int(i), "the type of operand 0, " + x.str()));
  out.assign(n.op == Op::swiglu_backward ? 2 : 1, x);
  return Status::Ok();
}

}  // namespace

ValueId reduce_to(Builder& b, ValueId g, const Shape& target) {
  const Shape s = b.shape(g);
  if (s == target) return g;
  std::vector<int64_t> axes;
  for (int i = 0; i < s.rank() - target.rank(); ++i) axes.push_back(i);
  return b.sum(g, axes);
}

Status infer_add(const Graph& g, const Node& n, std::vector<TensorType>& o) { return infer_binary(g, n, o); }
Status infer_sub(const Graph& g, const Node& n, std::vector<TensorType>& o) { return infer_binary(g, n, o); }
Status infer_mul(const Graph& g, const Node& n, std::vector<TensorType>& o) { return infer_binary(g, n, o); }
Status infer_div(const Graph& g, const Node& n, std::vector<TensorType>& o) { return infer_binary(g, n, o); }
Status infer_scale(const Graph& g, const Node& n, std::vector<TensorType>& o) { return infer_same_as_first(g, n, o); }
Status infer_silu(const Graph& g, const Node& n, std::vector<TensorType>& o) { return infer_same_as_first(g, n, o); }
Status infer_gelu(const Graph& g, const Node& n, std::vector<TensorType>& o) { return infer_same_as_first(g, n, o); }
Status infer_swiglu(const Graph& g, const Node& n, std::vector<TensorType>& o) { return infer_same_as_first(g, n, o); }
Status infer_silu_backward(const Graph& g, const Node& n, std::vector<TensorType>& o) {
  return infer_same_as_first(g, n, o);
}
Status infer_gelu_backward(const Graph& g, const Node& n, std::vector<TensorType>& o) {
  return infer_same_as_first(g, n, o);
}
Status infer_swiglu_backward(const Graph& g, const Node& n, std::vector<TensorType>& o) {
  return infer_same_as_first(g, n, o);
}

using Grads = std::vector<ValueId>;
using Needs = std::vector<bool>;

Status vjp_add(Builder& b, const Node& n, const Grads& og, const Needs& needs, Grads& ig) {
  if (needs[0]) ig[0] = og[0];
  if (needs[1]) ig[1] = reduce_to(b, og[0], b.shape(n.inputs[1]));
  return Status::Ok();
}

Status vjp_sub(Builder& b, const Node& n, const Grads& og, const Needs& needs, Grads& ig) {
  if (needs[0]) ig[0] = og[0];
  if (needs[1]) ig[1] = b.scale(reduce_to(b, og[0], b.shape(n.inputs[1])), -1.0f);
  return Status::Ok();
}

Status vjp_mul(Builder& b, const Node& n, const Grads& og, const Needs& needs, Grads& ig) {
  if (needs[0]) ig[0] = b.mul(og[0], n.inputs[1]);
  if (needs[1]) ig[1] = reduce_to(b, b.mul(og[0], n.inputs[0]), b.shape(n.inputs[1]));
  return Status::Ok();
}

// d(a/b)/db = -a/b² = -out/b, so db = -Σ g·out/b without recomputing a/b.
Status vjp_div(Builder& b, const Node& n, const Grads& og, const Needs& needs, Grads& ig) {
  if (needs[0]) ig[0] = b.div(og[0], n.inputs[1]);
  if (needs[1]) {
    ValueId t = b.div(b.mul(og[0], n.outputs[0]), n.inputs[1]);
    ig[1] = b.scale(reduce_to(b, t, b.shape(n.inputs[1])), -1.0f);
  }
  return Status::Ok();
}

Status vjp_scale(Builder& b, const Node& n, const Grads& og, const Needs&, Grads& ig) {
  ig[0] = b.scale(og[0], std::get<ScaleAttrs>(n.attrs).scale);
  return Status::Ok();
}

Status vjp_silu(Builder& b, const Node& n, const Grads& og, const Needs&, Grads& ig) {
  ig[0] = b.op1(Op::silu_backward, {n.inputs[0], og[0]});
  return Status::Ok();
}

Status vjp_gelu(Builder& b, const Node& n, const Grads& og, const Needs&, Grads& ig) {
  ig[0] = b.op1(Op::gelu_backward, {n.inputs[0], og[0]});
  return Status::Ok();
}

Status vjp_swiglu(Builder& b, const Node& n, const Grads& og, const Needs&, Grads& ig) {
  auto d = b.op(Op::swiglu_backward, {n.inputs[0], n.inputs[1], og[0]});
  ig[0] = d[0];
  ig[1] = d[1];
  return Status::Ok();
}

}  // namespace autosp::ir::rules
