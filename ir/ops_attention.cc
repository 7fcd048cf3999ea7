// attention(q [B,T,H,D], k [B,T,Hkv,D], v [B,T,Hkv,D] [, segments [B,T] i32] [, index [B,T] i32])
// -> o [B,T,H,D], lse [B,H,T] f32. Causal and GQA by attribute/shape; segments restrict each
// token to its own document (packed sequences); with attrs.indexed the last input holds each
// token's global position in the sequence, which causality compares (SP layouts reorder
// tokens). The lse output is for the backward; it is not differentiable.
//
// ring_attention(q, k, v, index [, segments]) is the same function over a sequence split
// across a ring of ranks (runtime/ring_attention.cc); its backward is its own op.
#include "ir/op_rules.h"

namespace autosp::ir::rules {

namespace {
// Checks i32 [batch, seq] side inputs (segments, index) of an attention op.
Status check_token_input(const Graph& g, const Node& n, int index, const char* what) {
  const Shape& q = g.type(n.inputs[0]).shape;
  return expect(g.type(n.inputs[index]) == TensorType{DType::i32, Shape{q[0], q[1]}}, g, n, index,
                std::string("i32 ") + what + " [batch, seq]");
}

Status check_qkv(const Graph& g, const Node& n) {
  const auto& q = g.type(n.inputs[0]);
  const auto& k = g.type(n.inputs[1]);
  const auto& v = g.type(n.inputs[2]);
  RETURN_IF_ERROR(expect(is_float(q.dtype) && q.shape.rank() == 4, g, n, 0, "f32 or bf16 [batch, seq, heads, head_dim]"));
  RETURN_IF_ERROR(expect(k.dtype == q.dtype && k.shape.rank() == 4 && k.shape[0] == q.shape[0] &&
                             k.shape[1] == q.shape[1] && k.shape[3] == q.shape[3] && k.shape[2] > 0 &&
                             q.shape[2] % k.shape[2] == 0,
                         g, n, 1, std::string(dtype_name(q.dtype)) + " [batch, seq, kv_heads, head_dim] with kv_heads dividing " +
                                      std::to_string(q.shape[2])));
  RETURN_IF_ERROR(expect(v == k, g, n, 2, "the type of operand 1, " + k.str()));
  return Status::Ok();
}

// Inputs after the first `fixed`: [segments] [index]; which are present follows from the count.
Status check_side_inputs(const Graph& g, const Node& n, int fixed, bool indexed) {
  const int extra = int(n.inputs.size()) - fixed;
  RETURN_IF_ERROR(expect(extra >= int(indexed) && extra <= 1 + int(indexed), g, n, fixed,
                         indexed ? "[segments,] index after the tensors" : "at most segments after the tensors"));
  if (extra - int(indexed) == 1) RETURN_IF_ERROR(check_token_input(g, n, fixed, "segment ids"));
  if (indexed) RETURN_IF_ERROR(check_token_input(g, n, int(n.inputs.size()) - 1, "token index"));
  return Status::Ok();
}

Status check_backward_tensors(const Graph& g, const Node& n) {
  const auto& q = g.type(n.inputs[0]);
  RETURN_IF_ERROR(expect(g.type(n.inputs[3]) == q, g, n, 3, "the output o, " + q.str()));
  RETURN_IF_ERROR(expect(g.type(n.inputs[4]) == TensorType{DType::f32, Shape{q.shape[0], q.shape[2], q.shape[1]}},
                         g, n, 4, "the log-sum-exp [batch, heads, seq]"));
  RETURN_IF_ERROR(expect(g.type(n.inputs[5]) == q, g, n, 5, "the gradient of o, " + q.str()));
  return Status::Ok();
}
}  // namespace

Status infer_attention(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_qkv(g, n));
  RETURN_IF_ERROR(check_side_inputs(g, n, 3, std::get<AttentionAttrs>(n.attrs).indexed));
  const Shape& q = g.type(n.inputs[0]).shape;
  out = {g.type(n.inputs[0]), {DType::f32, Shape{q[0], q[2], q[1]}}};
  return Status::Ok();
}

// attention_backward(q, k, v, o, lse, do [, segments] [, index]) -> dq, dk, dv
Status infer_attention_backward(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_qkv(g, n));
  RETURN_IF_ERROR(check_backward_tensors(g, n));
  RETURN_IF_ERROR(check_side_inputs(g, n, 6, std::get<AttentionAttrs>(n.attrs).indexed));
  out = {g.type(n.inputs[0]), g.type(n.inputs[1]), g.type(n.inputs[2])};
  return Status::Ok();
}

Status vjp_attention(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                     std::vector<ValueId>& ig) {
  AUTOSP_CHECK(og[1] == kNoValue) << "lse is registered as non-differentiable";
  std::vector<ValueId> in{n.inputs[0], n.inputs[1], n.inputs[2], n.outputs[0], n.outputs[1], og[0]};
  in.insert(in.end(), n.inputs.begin() + 3, n.inputs.end());  // segments, index
  auto d = b.op(Op::attention_backward, in, n.attrs);
  ig[0] = d[0];
  ig[1] = d[1];
  ig[2] = d[2];
  return Status::Ok();
}

// ring_attention(q, k, v, index [, segments]) -> o, lse: the tensors as for attention, all
// local to this rank; the output is this rank's rows.
Status infer_ring_attention(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_qkv(g, n));
  RETURN_IF_ERROR(check_token_input(g, n, 3, "token index"));
  if (n.inputs.size() == 5) RETURN_IF_ERROR(check_token_input(g, n, 4, "segment ids"));
  const Shape& q = g.type(n.inputs[0]).shape;
  out = {g.type(n.inputs[0]), {DType::f32, Shape{q[0], q[2], q[1]}}};
  return Status::Ok();
}

// ring_attention_backward(q, k, v, o, lse, do, index [, segments]) -> dq, dk, dv
Status infer_ring_attention_backward(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_qkv(g, n));
  RETURN_IF_ERROR(check_backward_tensors(g, n));
  RETURN_IF_ERROR(check_token_input(g, n, 6, "token index"));
  if (n.inputs.size() == 8) RETURN_IF_ERROR(check_token_input(g, n, 7, "segment ids"));
  out = {g.type(n.inputs[0]), g.type(n.inputs[1]), g.type(n.inputs[2])};
  return Status::Ok();
}

Status vjp_ring_attention(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                          std::vector<ValueId>& ig) {
  AUTOSP_CHECK(og[1] == kNoValue) << "lse is registered as non-differentiable";
  std::vector<ValueId> in{n.inputs[0], n.inputs[1], n.inputs[2], n.outputs[0], n.outputs[1], og[0]};
  in.insert(in.end(), n.inputs.begin() + 3, n.inputs.end());  // index, segments
  auto d = b.op(Op::ring_attention_backward, in, n.attrs);
  ig[0] = d[0];
  ig[1] = d[1];
  ig[2] = d[2];
  return Status::Ok();
}

}  // namespace autosp::ir::rules
