// pack / unpack: many tensors <-> one flat, padded buffer. ZeRO gathers and reduce-scatters
// whole buckets with one collective each instead of one per (small) parameter.
#include "ir/op_rules.h"

namespace autosp::ir {

std::vector<int64_t> encode_shapes(const std::vector<Shape>& shapes) {
  std::vector<int64_t> enc;
  for (const Shape& s : shapes) {
    enc.push_back(s.rank());
    enc.insert(enc.end(), s.dims().begin(), s.dims().end());
  }
  return enc;
}

namespace rules {

// Buckets are f32 (gradients) or bf16 (parameters ZeRO-3 gathers in bf16); the parts of one
// bucket share its type.
Status infer_pack(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  int64_t total = 0;
  const DType dt = g.type(n.inputs[0]).dtype;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    RETURN_IF_ERROR(expect(g.type(n.inputs[i]).dtype == dt && is_float(dt), g, n, int(i),
                           std::string(dtype_name(dt)) + " (a float type, that of operand 0)"));
    total += g.type(n.inputs[i]).shape.numel();
  }
  const int64_t padded = std::get<PackAttrs>(n.attrs).padded;
  RETURN_IF_ERROR(expect(padded >= total, g, n, 0, "inputs totalling at most padded = " + std::to_string(padded) +
                                                       " elements, not " + std::to_string(total)));
  out = {{dt, Shape{padded}}};
  return Status::Ok();
}

Status vjp_pack(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>& needs,
                std::vector<ValueId>& ig) {
  std::vector<Shape> shapes;
  for (ValueId v : n.inputs) shapes.push_back(b.shape(v));
  auto parts = b.op(Op::unpack, {og[0]}, UnpackAttrs{encode_shapes(shapes)});
  for (size_t i = 0; i < parts.size(); ++i)
    if (needs[i]) ig[i] = parts[i];
  return Status::Ok();
}

Status infer_unpack(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const TensorType& flat = g.type(n.inputs[0]);
  RETURN_IF_ERROR(expect(is_float(flat.dtype) && flat.shape.rank() == 1, g, n, 0, "a flat float buffer"));
  const auto& enc = std::get<UnpackAttrs>(n.attrs).shapes;
  int64_t total = 0;
  out.clear();
  for (size_t i = 0; i < enc.size();) {
    const int64_t rank = enc[i++];
    if (rank < 0 || i + size_t(rank) > enc.size()) return operand_error(g, n, 0, "well-formed attribute shapes");
    Shape s(std::vector<int64_t>(enc.begin() + int64_t(i), enc.begin() + int64_t(i) + rank));
    i += size_t(rank);
    total += s.numel();
    out.push_back({flat.dtype, s});
  }
  RETURN_IF_ERROR(expect(!out.empty() && total <= flat.shape[0], g, n, 0,
                         "at least " + std::to_string(total) + " elements for the unpacked shapes"));
  return Status::Ok();
}

// Every part's gradient goes back to its place; a part with none contributes zeros, which
// pack cannot express, so all parts must reach the loss (every parameter does).
Status vjp_unpack(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                  std::vector<ValueId>& ig) {
  for (size_t i = 0; i < og.size(); ++i)
    if (og[i] == kNoValue)
      return InvalidArgument("unpack: part " + std::to_string(i) + " does not affect the loss");
  ig[0] = b.op1(Op::pack, og, PackAttrs{b.shape(n.inputs[0])[0]});
  return Status::Ok();
}

}  // namespace rules
}  // namespace autosp::ir
