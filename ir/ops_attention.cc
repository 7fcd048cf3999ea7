// attention(q [B,T,H,D], k [B,T,Hkv,D], v [B,T,Hkv,D] [, segments [B,T] i32]) -> o [B,T,H,D],
// lse [B,H,T] f32. Causal and GQA by attribute/shape; segments restrict each token to its own
// document (packed sequences). The lse output is for the backward (and, later, ring merging);
// it is not differentiable.
#include "ir/op_rules.h"

namespace autosp::ir::rules {

namespace {
Status check_qkv(const Graph& g, const Node& n, bool has_seg, int seg_index) {
  const auto& q = g.type(n.inputs[0]);
  const auto& k = g.type(n.inputs[1]);
  const auto& v = g.type(n.inputs[2]);
  RETURN_IF_ERROR(expect(q.dtype == DType::f32 && q.shape.rank() == 4, g, n, 0, "f32 [batch, seq, heads, head_dim]"));
  RETURN_IF_ERROR(expect(k.dtype == DType::f32 && k.shape.rank() == 4 && k.shape[0] == q.shape[0] &&
                             k.shape[1] == q.shape[1] && k.shape[3] == q.shape[3] && k.shape[2] > 0 &&
                             q.shape[2] % k.shape[2] == 0,
                         g, n, 1, "f32 [batch, seq, kv_heads, head_dim] with kv_heads dividing " +
                                      std::to_string(q.shape[2])));
  RETURN_IF_ERROR(expect(v == k, g, n, 2, "the type of operand 1, " + k.str()));
  if (has_seg)
    RETURN_IF_ERROR(expect(g.type(n.inputs[seg_index]) == TensorType{DType::i32, Shape{q.shape[0], q.shape[1]}}, g,
                           n, seg_index, "i32 segment ids [batch, seq]"));
  return Status::Ok();
}
}  // namespace

Status infer_attention(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_qkv(g, n, n.inputs.size() == 4, 3));
  const Shape& q = g.type(n.inputs[0]).shape;
  out = {g.type(n.inputs[0]), {DType::f32, Shape{q[0], q[2], q[1]}}};
  return Status::Ok();
}

// attention_backward(q, k, v, o, lse, do [, segments]) -> dq, dk, dv
Status infer_attention_backward(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_qkv(g, n, n.inputs.size() == 7, 6));
  const auto& q = g.type(n.inputs[0]);
  RETURN_IF_ERROR(expect(g.type(n.inputs[3]) == q, g, n, 3, "the output o, " + q.str()));
  RETURN_IF_ERROR(expect(g.type(n.inputs[4]) == TensorType{DType::f32, Shape{q.shape[0], q.shape[2], q.shape[1]}},
                         g, n, 4, "the log-sum-exp [batch, heads, seq]"));
  RETURN_IF_ERROR(expect(g.type(n.inputs[5]) == q, g, n, 5, "the gradient of o, " + q.str()));
  out = {q, g.type(n.inputs[1]), g.type(n.inputs[2])};
  return Status::Ok();
}

Status vjp_attention(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                     std::vector<ValueId>& ig) {
  AUTOSP_CHECK(og[1] == kNoValue) << "lse is registered as non-differentiable";
  std::vector<ValueId> in{n.inputs[0], n.inputs[1], n.inputs[2], n.outputs[0], n.outputs[1], og[0]};
  if (n.inputs.size() == 4) in.push_back(n.inputs[3]);
  auto d = b.op(Op::attention_backward, in, n.attrs);
  ig[0] = d[0];
  ig[1] = d[1];
  ig[2] = d[2];
  return Status::Ok();
}

}  // namespace autosp::ir::rules
