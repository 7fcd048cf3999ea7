#include "ir/graph.h"

#include "ir/registry.h"

namespace autosp::ir {

ValueId Graph::add_arg(const std::string& name, TensorType type, ArgRole role, Init init) {
  ValueId v = add_value(std::move(type));
  values[v].name = name;
  args.push_back({v, role, init});
  return v;
}

ValueId Graph::add_value(TensorType type) {
  values.push_back({std::move(type), {}, {}});
  return ValueId(values.size() - 1);
}

StatusOr<std::vector<ValueId>> Graph::add_node(Op op, std::vector<ValueId> inputs, Attrs attrs) {
  const OpInfo& info = op_info(op);
  const int n_in = int(inputs.size());
  if (n_in < info.min_inputs || n_in > info.max_inputs)
    return InvalidArgument(std::string(info.name) + ": got " + std::to_string(n_in) + " operands, expected " +
                           std::to_string(info.min_inputs) +
                           (info.max_inputs != info.min_inputs ? "-" + std::to_string(info.max_inputs) : ""));
  for (ValueId v : inputs)
    if (v < 0 || v >= ValueId(values.size()))
      return InvalidArgument(std::string(info.name) + ": operand %" + std::to_string(v) + " does not exist");
  if (attrs.index() != info.default_attrs.index())
    return InvalidArgument(std::string(info.name) + ": wrong attribute struct");
  Node n{op, std::move(inputs), {}, std::move(attrs)};
  std::vector<TensorType> out;
  RETURN_IF_ERROR(info.infer(*this, n, out));
  AUTOSP_CHECK(info.num_outputs == kVariadicOutputs || int(out.size()) == info.num_outputs) << info.name;
  for (auto& t : out) n.outputs.push_back(add_value(std::move(t)));
  nodes.push_back(std::move(n));
  return nodes.back().outputs;
}

ValueId Graph::find_arg(const std::string& name) const {
  for (const Arg& a : args)
    if (values[a.value].name == name) return a.value;
  return kNoValue;
}

ValueId Graph::find_output(const std::string& name) const {
  for (const Output& o : outputs)
    if (o.name == name) return o.value;
  return kNoValue;
}

std::vector<ValueId> Graph::params() const {
  std::vector<ValueId> p;
  for (const Arg& a : args)
    if (a.role == ArgRole::param) p.push_back(a.value);
  return p;
}

std::vector<bool> live_nodes(const Graph& g) {
  std::vector<bool> live_value(g.values.size(), false), keep(g.nodes.size(), false);
  for (const Output& o : g.outputs) live_value[o.value] = true;
  for (size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    for (ValueId v : n.outputs) keep[i] = keep[i] || live_value[v];
    if (keep[i])
      for (ValueId v : n.inputs) live_value[v] = true;
  }
  return keep;
}

void remove_dead_nodes(Graph& g) {
  const std::vector<bool> keep = live_nodes(g);
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (keep[i]) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

}  // namespace autosp::ir
