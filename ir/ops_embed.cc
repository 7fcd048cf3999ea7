// Token embedding and rotary position embedding.
#include "ir/op_rules.h"

namespace autosp::ir::rules {

// embedding(tokens [...] i32, table [V, D]) -> [..., D]
Status infer_embedding(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& t = g.type(n.inputs[0]);
  const auto& w = g.type(n.inputs[1]);
  RETURN_IF_ERROR(expect(t.dtype == DType::i32, g, n, 0, "i32 token ids"));
  RETURN_IF_ERROR(expect(is_float(w.dtype) && w.shape.rank() == 2, g, n, 1, "a float table [vocab, dim]"));
  std::vector<int64_t> d = t.shape.dims();
  d.push_back(w.shape[1]);
  out = {{w.dtype, Shape(d)}};
  return Status::Ok();
}

// embedding_backward(tokens, dy) {vocab} -> d_table [vocab, D]
Status infer_embedding_backward(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& t = g.type(n.inputs[0]);
  const auto& dy = g.type(n.inputs[1]);
  const int64_t vocab = std::get<EmbeddingBackwardAttrs>(n.attrs).vocab;
  RETURN_IF_ERROR(expect(t.dtype == DType::i32, g, n, 0, "i32 token ids"));
  std::vector<int64_t> lead(dy.shape.dims().begin(), dy.shape.dims().end() - (dy.shape.rank() > 0 ? 1 : 0));
  RETURN_IF_ERROR(expect(is_float(dy.dtype) && dy.shape.rank() == t.shape.rank() + 1 && Shape(lead) == t.shape,
                         g, n, 1, "float gradients of shape " + t.shape.str() + " + [dim]"));
  RETURN_IF_ERROR(expect(vocab > 0, g, n, 0, "attribute vocab > 0"));
  out = {{dy.dtype, Shape{vocab, dy.shape[-1]}}};
  return Status::Ok();
}

Status vjp_embedding(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>& needs,
                     std::vector<ValueId>& ig) {
  if (needs[1])
    ig[1] = b.op1(Op::embedding_backward, {n.inputs[0], og[0]},
                  EmbeddingBackwardAttrs{b.shape(n.inputs[1])[0]});
  return Status::Ok();
}

// rope(x [B, T, H, D], positions [B, T] i32) -> x rotated; D even.
Status infer_rope(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& x = g.type(n.inputs[0]);
  const auto& p = g.type(n.inputs[1]);
  RETURN_IF_ERROR(expect(is_float(x.dtype) && x.shape.rank() == 4 && x.shape[3] % 2 == 0, g, n, 0,
                         "f32 or bf16 [batch, seq, heads, head_dim] with an even head_dim"));
  RETURN_IF_ERROR(expect(p.dtype == DType::i32 && p.shape == Shape{x.shape[0], x.shape[1]}, g, n, 1,
                         "i32 positions [batch, seq]"));
  out = {x};
  return Status::Ok();
}

// A rotation's adjoint is the inverse rotation.
Status vjp_rope(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                std::vector<ValueId>& ig) {
  const auto& a = std::get<RopeAttrs>(n.attrs);
  ig[0] = b.rope(og[0], n.inputs[1], a.theta, !a.inverse);
  return Status::Ok();
}

}  // namespace autosp::ir::rules
