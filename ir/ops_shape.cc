// Shape ops (reshape, permute) and reductions (sum, mean) with their adjoint, broadcast.
#include <algorithm>

#include "ir/op_rules.h"

namespace autosp::ir::rules {

namespace {
// Validates `axes` against rank and returns the per-axis reduce mask.
StatusOr<std::vector<bool>> axis_mask(const Graph& g, const Node& n, const std::vector<int64_t>& axes, int rank) {
  std::vector<bool> mask(rank, axes.empty());
  for (int64_t a : axes) {
    if (a < 0 || a >= rank || mask[a])
      return operand_error(g, n, 0, "distinct axes in [0, " + std::to_string(rank) + ")");
    mask[a] = true;
  }
  return mask;
}

// Shapes in attributes come from pass or user code; a negative extent would make a type the
// text form cannot express (and numel() could still match, e.g. [-1,-4] for 4 elements).
bool non_negative(const Shape& s) {
  return std::all_of(s.dims().begin(), s.dims().end(), [](int64_t d) { return d >= 0; });
}
}  // namespace

Status infer_reshape(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& x = g.type(n.inputs[0]);
  Shape s(std::get<ShapeAttrs>(n.attrs).shape);
  RETURN_IF_ERROR(expect(non_negative(s), g, n, 0, "attribute shape without negative extents, not " + s.str()));
  RETURN_IF_ERROR(expect(s.numel() == x.shape.numel(), g, n, 0, "as many elements as shape " + s.str()));
  out = {{x.dtype, s}};
  return Status::Ok();
}

Status vjp_reshape(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                   std::vector<ValueId>& ig) {
  ig[0] = b.reshape(og[0], b.shape(n.inputs[0]));
  return Status::Ok();
}

Status infer_permute(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& x = g.type(n.inputs[0]);
  const auto& perm = std::get<PermuteAttrs>(n.attrs).perm;
  std::vector<int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  bool ok = int(perm.size()) == x.shape.rank();
  for (size_t i = 0; ok && i < sorted.size(); ++i) ok = sorted[i] == int64_t(i);
  RETURN_IF_ERROR(expect(ok, g, n, 0, "a rank matching a permutation of its axes"));
  std::vector<int64_t> d;
  for (int64_t p : perm) d.push_back(x.shape[int(p)]);
  out = {{x.dtype, Shape(d)}};
  return Status::Ok();
}

Status vjp_permute(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                   std::vector<ValueId>& ig) {
  const auto& perm = std::get<PermuteAttrs>(n.attrs).perm;
  std::vector<int64_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = int64_t(i);
  ig[0] = b.permute(og[0], inv);
  return Status::Ok();
}

static Status infer_reduce(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& x = g.type(n.inputs[0]);
  RETURN_IF_ERROR(expect(is_float(x.dtype), g, n, 0, "f32 or bf16"));
  ASSIGN_OR_RETURN(auto mask, axis_mask(g, n, std::get<ReduceAttrs>(n.attrs).axes, x.shape.rank()));
  std::vector<int64_t> d;
  for (int i = 0; i < x.shape.rank(); ++i)
    if (!mask[i]) d.push_back(x.shape[i]);
  out = {{x.dtype, Shape(d)}};
  return Status::Ok();
}

Status infer_sum(const Graph& g, const Node& n, std::vector<TensorType>& out) { return infer_reduce(g, n, out); }
Status infer_mean(const Graph& g, const Node& n, std::vector<TensorType>& out) { return infer_reduce(g, n, out); }

static std::vector<int64_t> reduced_axes(const Node& n, int rank) {
  auto axes = std::get<ReduceAttrs>(n.attrs).axes;
  if (axes.empty())
    for (int i = 0; i < rank; ++i) axes.push_back(i);
  return axes;
}

Status vjp_sum(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
               std::vector<ValueId>& ig) {
  const Shape s = b.shape(n.inputs[0]);
  ig[0] = b.broadcast(og[0], s, reduced_axes(n, s.rank()));
  return Status::Ok();
}

Status vjp_mean(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                std::vector<ValueId>& ig) {
  const Shape s = b.shape(n.inputs[0]);
  const Shape o = b.shape(n.outputs[0]);
  ig[0] = b.broadcast(og[0], s, reduced_axes(n, s.rank()), float(double(o.numel()) / double(s.numel())));
  return Status::Ok();
}

// broadcast(x) {shape, axes, scale}: x's shape must be `shape` with `axes` removed.
Status infer_broadcast(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& x = g.type(n.inputs[0]);
  const auto& a = std::get<BroadcastAttrs>(n.attrs);
  Shape full(a.shape);
  RETURN_IF_ERROR(expect(non_negative(full), g, n, 0, "attribute shape without negative extents, not " + full.str()));
  ASSIGN_OR_RETURN(auto mask, axis_mask(g, n, a.axes, full.rank()));
  std::vector<int64_t> kept;
  for (int i = 0; i < full.rank(); ++i)
    if (!mask[i]) kept.push_back(full[i]);
  RETURN_IF_ERROR(expect(is_float(x.dtype) && x.shape == Shape(kept), g, n, 0,
                         "a float " + Shape(kept).str() + " (shape without the broadcast axes)"));
  out = {{x.dtype, full}};
  return Status::Ok();
}

Status vjp_broadcast(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                     std::vector<ValueId>& ig) {
  const auto& a = std::get<BroadcastAttrs>(n.attrs);
  ValueId s = b.sum(og[0], reduced_axes(Node{Op::sum, {}, {}, ReduceAttrs{a.axes}}, int(a.shape.size())));
  ig[0] = a.scale == 1.0f ? s : b.scale(s, a.scale);
  return Status::Ok();
}

// split(x) {axis, sizes} -> one part per size; sizes sum to the axis' extent.
Status infer_split(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& x = g.type(n.inputs[0]);
  const auto& a = std::get<SplitAttrs>(n.attrs);
  RETURN_IF_ERROR(expect(a.axis >= 0 && a.axis < x.shape.rank(), g, n, 0, "an axis " + std::to_string(a.axis)));
  int64_t total = 0;
  bool positive = !a.sizes.empty();
  for (int64_t s : a.sizes) {
    total += s;
    positive = positive && s > 0;
  }
  RETURN_IF_ERROR(expect(positive && total == x.shape[int(a.axis)], g, n, 0,
                         "positive part sizes summing to axis " + std::to_string(a.axis) + "'s extent"));
  out.clear();
  for (int64_t s : a.sizes) {
    TensorType t = x;
    t.shape[int(a.axis)] = s;
    out.push_back(t);
  }
  return Status::Ok();
}

Status vjp_split(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                 std::vector<ValueId>& ig) {
  for (ValueId v : og)
    if (v == kNoValue) return InvalidArgument("split: a part does not affect the loss");
  ig[0] = b.op1(Op::concat, og, ConcatAttrs{std::get<SplitAttrs>(n.attrs).axis});
  return Status::Ok();
}

// concat(x1, ..., xn) {axis}: equal types but for the axis.
Status infer_concat(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const int64_t axis = std::get<ConcatAttrs>(n.attrs).axis;
  TensorType t = g.type(n.inputs[0]);
  RETURN_IF_ERROR(expect(axis >= 0 && axis < t.shape.rank(), g, n, 0, "an axis " + std::to_string(axis)));
  for (size_t i = 1; i < n.inputs.size(); ++i) {
    TensorType u = g.type(n.inputs[i]);
    const int64_t extent = u.shape[int(axis)];
    u.shape[int(axis)] = t.shape[int(axis)];
    RETURN_IF_ERROR(expect(u == t, g, n, int(i), "the type of operand 0 except along axis " + std::to_string(axis)));
    t.shape[int(axis)] += extent;
  }
  out = {t};
  return Status::Ok();
}

Status vjp_concat(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>& needs,
                  std::vector<ValueId>& ig) {
  const int64_t axis = std::get<ConcatAttrs>(n.attrs).axis;
  std::vector<int64_t> sizes;
  for (ValueId v : n.inputs) sizes.push_back(b.shape(v)[int(axis)]);
  auto parts = b.op(Op::split, {og[0]}, SplitAttrs{axis, sizes});
  for (size_t i = 0; i < parts.size(); ++i)
    if (needs[i]) ig[i] = parts[i];
  return Status::Ok();
}

}  // namespace autosp::ir::rules
