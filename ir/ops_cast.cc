// cast(x) {dtype}: the same tensor in another floating-point type (f32 <-> bf16, rounding to
// nearest even). Its VJP casts the gradient back, which is how f32 master parameters get
// f32 gradients in a bf16 program.
#include "ir/op_rules.h"

namespace autosp::ir::rules {

Status infer_cast(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& x = g.type(n.inputs[0]);
  const DType to = std::get<CastAttrs>(n.attrs).dtype;
  RETURN_IF_ERROR(expect(is_float(x.dtype), g, n, 0, "a floating-point tensor"));
  RETURN_IF_ERROR(expect(is_float(to), g, n, 0, "attribute dtype f32 or bf16"));
  out = {{to, x.shape}};
  return Status::Ok();
}

Status vjp_cast(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                std::vector<ValueId>& ig) {
  ig[0] = b.cast(og[0], b.dtype(n.inputs[0]));
  return Status::Ok();
}

}  // namespace autosp::ir::rules
