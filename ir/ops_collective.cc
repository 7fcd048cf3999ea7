// Collectives as IR ops. They are ordinary nodes with shape rules and VJP rules, so autodiff
// derives the backward communication like any other backward.
//
// Gradient convention (SPMD): the cotangent a rank holds for any value is its partial
// contribution; the true gradient is the sum over ranks. Under it:
//   VJP(all_to_all)     = the inverse all_to_all (split and concat swapped)
//   VJP(all_gather)     = reduce_scatter along the same axis
//   VJP(reduce_scatter) = all_gather
//   VJP(all_reduce)     = all_reduce
//   VJP(send_recv)      = send_recv the other way round the ring
// and a replicated parameter's gradient is all-reduced over the world (autodiff adds it). The
// loss seed is 1/world on every rank, so the partial seeds sum to 1.
#include "ir/op_rules.h"

namespace autosp::ir {

bool is_collective(Op op) {
  switch (op) {
    case Op::all_to_all:
    case Op::all_gather:
    case Op::reduce_scatter:
    case Op::all_reduce:
    case Op::send_recv: return true;
    default: return false;
  }
}

std::string_view group_name(MeshGroup g) {
  switch (g) {
    case MeshGroup::world: return "world";
    case MeshGroup::sp: return "sp";
    case MeshGroup::sp_inner: return "sp_inner";
    case MeshGroup::sp_outer: return "sp_outer";
    case MeshGroup::dp: return "dp";
  }
  return "?";
}

std::optional<MeshGroup> group_from_name(std::string_view name) {
  for (MeshGroup g : {MeshGroup::world, MeshGroup::sp, MeshGroup::sp_inner, MeshGroup::sp_outer, MeshGroup::dp})
    if (group_name(g) == name) return g;
  return std::nullopt;
}

namespace rules {

namespace {
Status check_axis(const Graph& g, const Node& n, int64_t axis, const char* what) {
  const int rank = g.type(n.inputs[0]).shape.rank();
  return expect(axis >= 0 && axis < rank, g, n, 0, std::string("a tensor with a ") + what + " axis " + std::to_string(axis));
}
Status check_size(const Graph& g, const Node& n, int64_t size) {
  return expect(size >= 1, g, n, 0, "a group size >= 1");
}
}  // namespace

Status infer_all_to_all(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& a = std::get<AllToAllAttrs>(n.attrs);
  RETURN_IF_ERROR(check_size(g, n, a.size));
  RETURN_IF_ERROR(check_axis(g, n, a.split, "split"));
  RETURN_IF_ERROR(check_axis(g, n, a.concat, "concat"));
  TensorType t = g.type(n.inputs[0]);
  RETURN_IF_ERROR(expect(t.shape[int(a.split)] % a.size == 0, g, n, 0,
                         "axis " + std::to_string(a.split) + " divisible by the group size " + std::to_string(a.size)));
  t.shape[int(a.split)] /= a.size;
  t.shape[int(a.concat)] *= a.size;
  out = {t};
  return Status::Ok();
}

Status vjp_all_to_all(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                      std::vector<ValueId>& ig) {
  auto a = std::get<AllToAllAttrs>(n.attrs);
  std::swap(a.split, a.concat);
  ig[0] = b.op1(Op::all_to_all, {og[0]}, a);
  return Status::Ok();
}

Status infer_all_gather(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& a = std::get<AxisCollectiveAttrs>(n.attrs);
  RETURN_IF_ERROR(check_size(g, n, a.size));
  RETURN_IF_ERROR(check_axis(g, n, a.axis, "gather"));
  TensorType t = g.type(n.inputs[0]);
  t.shape[int(a.axis)] *= a.size;
  out = {t};
  return Status::Ok();
}

Status vjp_all_gather(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                      std::vector<ValueId>& ig) {
  ig[0] = b.op1(Op::reduce_scatter, {og[0]}, n.attrs);
  return Status::Ok();
}

Status infer_reduce_scatter(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  const auto& a = std::get<AxisCollectiveAttrs>(n.attrs);
  RETURN_IF_ERROR(check_size(g, n, a.size));
  RETURN_IF_ERROR(check_axis(g, n, a.axis, "scatter"));
  TensorType t = g.type(n.inputs[0]);
  RETURN_IF_ERROR(expect(t.dtype == DType::f32 && t.shape[int(a.axis)] % a.size == 0, g, n, 0,
                         "f32 with axis " + std::to_string(a.axis) + " divisible by " + std::to_string(a.size)));
  t.shape[int(a.axis)] /= a.size;
  out = {t};
  return Status::Ok();
}

Status vjp_reduce_scatter(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                          std::vector<ValueId>& ig) {
  ig[0] = b.op1(Op::all_gather, {og[0]}, n.attrs);
  return Status::Ok();
}

Status infer_all_reduce(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_size(g, n, std::get<GroupAttrs>(n.attrs).size));
  RETURN_IF_ERROR(expect(g.type(n.inputs[0]).dtype == DType::f32, g, n, 0, "f32 (a sum)"));
  out = {g.type(n.inputs[0])};
  return Status::Ok();
}

Status vjp_all_reduce(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                      std::vector<ValueId>& ig) {
  ig[0] = b.op1(Op::all_reduce, {og[0]}, n.attrs);
  return Status::Ok();
}

Status infer_send_recv(const Graph& g, const Node& n, std::vector<TensorType>& out) {
  RETURN_IF_ERROR(check_size(g, n, std::get<SendRecvAttrs>(n.attrs).size));
  out = {g.type(n.inputs[0])};
  return Status::Ok();
}

Status vjp_send_recv(Builder& b, const Node& n, const std::vector<ValueId>& og, const std::vector<bool>&,
                     std::vector<ValueId>& ig) {
  auto a = std::get<SendRecvAttrs>(n.attrs);
  a.shift = -a.shift;
  ig[0] = b.op1(Op::send_recv, {og[0]}, a);
  return Status::Ok();
}

}  // namespace rules
}  // namespace autosp::ir
