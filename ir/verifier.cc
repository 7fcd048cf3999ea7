#include "ir/verifier.h"

#include <set>
#include <variant>

#include "ir/printer.h"
#include "ir/registry.h"

namespace autosp::ir {

namespace {

// The alternatives of Attrs, in order, for "wrong attribute struct" messages.
constexpr const char* kAttrsNames[] = {"NoAttrs",     "MatmulAttrs",    "ScaleAttrs",      "NormAttrs",
                                       "RopeAttrs",   "ShapeAttrs",     "PermuteAttrs",    "AttentionAttrs",
                                       "CrossEntropyAttrs", "ReduceAttrs", "BroadcastAttrs", "EmbeddingBackwardAttrs",
                                       "AllToAllAttrs", "AxisCollectiveAttrs", "GroupAttrs", "SendRecvAttrs",
                                       "RingAttentionAttrs", "PackAttrs", "UnpackAttrs", "SplitAttrs",
                                       "ConcatAttrs", "CastAttrs"};
static_assert(std::size(kAttrsNames) == std::variant_size_v<Attrs>, "name every Attrs alternative");

constexpr int kUndefined = -2, kByArg = -1;  // else: index of the defining node

class Verifier {
 public:
  explicit Verifier(const Graph& g) : g_(g), def_(g.values.size(), kUndefined), later_(g.values.size(), false) {
    for (const Node& n : g.nodes)
      for (ValueId v : n.outputs)
        if (exists(v)) later_[v] = true;
  }

  Status run() {
    for (size_t i = 0; i < g_.args.size(); ++i) RETURN_IF_ERROR(arg(i));
    for (size_t i = 0; i < g_.nodes.size(); ++i) RETURN_IF_ERROR(node(int(i)));
    std::set<std::string> names;
    for (const Output& o : g_.outputs) {
      if (o.name.empty()) return fail("an output has an empty name");
      if (!names.insert(o.name).second) return fail("output name '" + o.name + "' is used twice");
      if (!exists(o.value) || def_[o.value] == kUndefined)
        return fail("output '" + o.name + "' refers to value " + std::to_string(o.value) + ", which is not defined");
    }
    return Status::Ok();
  }

 private:
  static Status fail(const std::string& msg) { return InvalidArgument("verify: " + msg); }
  // Printing the node walks the whole graph, so it only happens once something is wrong.
  Status node_fail(const Node& n, const std::string& msg) const {
    return fail("node '" + print_node(g_, n) + "': " + msg);
  }
  bool exists(ValueId v) const { return v >= 0 && v < ValueId(g_.values.size()); }
  // Where an already-defined value came from, for "defined twice" messages.
  std::string definer(ValueId v) const {
    return def_[v] == kByArg ? "argument %" + g_.values[v].name : "node '" + print_node(g_, g_.nodes[def_[v]]) + "'";
  }
  // "" when fine, else why the sharding does not fit the type.
  static std::string check_sharding(const Value& v) {
    if (v.sharding.kind == ShardKind::shard && (v.sharding.dim < 0 || v.sharding.dim >= v.type.shape.rank()))
      return "sharding shard(" + std::to_string(v.sharding.dim) + ") names a dimension that " + v.type.str() +
             " does not have";
    return "";
  }

  Status arg(size_t i) {
    const Arg& a = g_.args[i];
    const std::string what = "argument " + std::to_string(i);
    if (!exists(a.value)) return fail(what + " refers to value " + std::to_string(a.value) + ", which does not exist");
    const Value& v = g_.values[a.value];
    if (v.name.empty()) return fail(what + " has an empty name");
    if (!arg_names_.insert(v.name).second) return fail("argument name '" + v.name + "' is used twice");
    if (def_[a.value] != kUndefined) return fail("argument %" + v.name + " is already defined as " + definer(a.value));
    def_[a.value] = kByArg;
    if (auto s = check_sharding(v); !s.empty()) return fail("argument %" + v.name + ": " + s);
    return Status::Ok();
  }

  Status node(int index) {
    const Node& n = g_.nodes[index];
    if (int(n.op) >= kNumOps) return fail("node " + std::to_string(index) + " has no valid op");
    const OpInfo& info = op_info(n.op);
    const int n_in = int(n.inputs.size());
    if (n_in < info.min_inputs || n_in > info.max_inputs)
      return node_fail(n, "has " + std::to_string(n_in) + " operands, but " + info.name + " takes " +
                              std::to_string(info.min_inputs) +
                              (info.max_inputs != info.min_inputs ? "-" + std::to_string(info.max_inputs) : ""));
    if (n.attrs.index() != info.default_attrs.index())
      return node_fail(n, std::string("carries ") + kAttrsNames[n.attrs.index()] + ", but " + info.name + " takes " +
                              kAttrsNames[info.default_attrs.index()]);
    for (int i = 0; i < n_in; ++i) {
      const ValueId v = n.inputs[i];
      if (exists(v) && def_[v] != kUndefined) continue;
      const std::string operand = "operand " + std::to_string(i) + " (" + print_value_name(g_, v) + ")";
      if (!exists(v)) return node_fail(n, operand + " does not exist");
      return node_fail(n, operand + (later_[v] ? " is used before it is defined" : " is not defined"));
    }
    if (info.num_outputs != kVariadicOutputs && int(n.outputs.size()) != info.num_outputs)
      return node_fail(n, "has " + std::to_string(n.outputs.size()) + " results, but " + info.name + " produces " +
                              std::to_string(info.num_outputs));
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      const ValueId v = n.outputs[i];
      const std::string result = "result " + std::to_string(i);
      if (!exists(v)) return node_fail(n, result + " refers to value " + std::to_string(v) + ", which does not exist");
      if (def_[v] != kUndefined) return node_fail(n, result + " is already defined by " + definer(v));
      def_[v] = index;
      if (auto s = check_sharding(g_.values[v]); !s.empty()) return node_fail(n, result + ": " + s);
    }
    std::vector<TensorType> inferred;
    if (Status st = info.infer(g_, n, inferred); !st.ok()) return node_fail(n, st.message());
    if (inferred.size() != n.outputs.size())
      return node_fail(n, "has " + std::to_string(n.outputs.size()) + " results, but its attributes give " +
                              std::to_string(inferred.size()));
    for (size_t i = 0; i < n.outputs.size(); ++i)
      if (inferred[i] != g_.type(n.outputs[i]))
        return node_fail(n, "result " + std::to_string(i) + " has type " + g_.type(n.outputs[i]).str() + ", but " +
                                info.name + " infers " + inferred[i].str());
    return Status::Ok();
  }

  const Graph& g_;
  std::vector<int> def_;     // per value: kUndefined, kByArg or the defining node so far
  std::vector<bool> later_;  // per value: some node defines it (to tell "before" from "never")
  std::set<std::string> arg_names_;
};

}  // namespace

Status verify(const Graph& g) { return Verifier(g).run(); }

}  // namespace autosp::ir
