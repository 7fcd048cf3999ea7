#include "sp_compiler/recompute.h"

#include <functional>
#include <map>

#include "core/log.h"
#include "sp_compiler/autodiff.h"

namespace autosp::sp {

const char* recompute_name(RecomputePolicy p) {
  switch (p) {
    case RecomputePolicy::none: return "none";
    case RecomputePolicy::selective: return "selective";
    case RecomputePolicy::layer: return "layer";
    case RecomputePolicy::full: return "full";
  }
  return "?";
}

StatusOr<RecomputePolicy> parse_recompute(const std::string& name) {
  for (RecomputePolicy p :
       {RecomputePolicy::none, RecomputePolicy::selective, RecomputePolicy::layer, RecomputePolicy::full})
    if (name == recompute_name(p)) return p;
  return InvalidArgument("train.recompute: unknown policy \"" + name + "\"");
}

namespace {

using ir::Op;
using ir::ValueId;

// Ops cheap enough to recompute under "selective": per-token, memory-bound.
bool cheap(Op op) {
  switch (op) {
    case Op::rms_norm:
    case Op::layer_norm:
    case Op::rope:
    case Op::silu:
    case Op::gelu:
    case Op::swiglu:
    case Op::add:
    case Op::sub:
    case Op::mul:
    case Op::div:
    case Op::scale:
    case Op::reshape:
    case Op::permute:
    case Op::broadcast: return true;
    default: return false;
  }
}

// Never recomputed: the loss, parameter buckets, the embedding; and — except under "full",
// which keeps nothing inside a layer — communication and attention (whose backward needs
// only O and LSE, so keeping them is cheap next to re-running the quadratic forward).
bool always_kept(Op op, RecomputePolicy policy) {
  if (ir::is_collective(op) || op == Op::attention || op == Op::ring_attention)
    return policy != RecomputePolicy::full;
  return op == Op::cross_entropy || op == Op::pack || op == Op::unpack || op == Op::embedding;
}

// Under "layer", attention's output is kept for attention's backward, and the all-to-all that
// takes it back to the sequence layout (Ulysses, and hybrid's inner part) is re-run in
// backward for o_proj's weight gradient instead of kept: the step holds O once, not twice,
// for one more all-to-all of O per layer (communication traded for memory, as "full" trades
// all of a layer's collectives; "selective" keeps both copies and repeats nothing). The
// schedule issues the repeat about a layer ahead of its use.
bool repeats_attention_exchange(const ir::Graph& g, const ir::Node& n, const std::vector<int>& producer,
                                RecomputePolicy policy) {
  if (n.op != Op::all_to_all || policy != RecomputePolicy::layer) return false;
  const int p = producer[n.inputs[0]];
  return p >= 0 && (g.nodes[size_t(p)].op == Op::attention || g.nodes[size_t(p)].op == Op::ring_attention);
}

class Recompute final : public Pass {
 public:
  explicit Recompute(RecomputePolicy p) : policy_(p) {}
  std::string_view name() const override { return "recompute"; }

  Status run(ir::Graph& g, const PassContext&) override {
    if (policy_ == RecomputePolicy::none) return Status::Ok();
    const ValueId seed = g.find_arg(kLossSeedInput);
    if (seed == ir::kNoValue) return Status::Ok();  // forward-only: nothing to trade

    // Split forward / backward by dependence on the loss seed.
    const size_t n = g.nodes.size();
    std::vector<bool> bwd_value(g.values.size(), false), is_bwd(n, false);
    bwd_value[seed] = true;
    std::vector<int> producer(g.values.size(), -1);
    for (size_t i = 0; i < n; ++i) {
      for (ValueId v : g.nodes[i].inputs) is_bwd[i] = is_bwd[i] || bwd_value[v];
      for (ValueId v : g.nodes[i].outputs) {
        bwd_value[v] = is_bwd[i];
        producer[v] = int(i);
      }
    }
    // Which forward nodes are recomputed.
    std::vector<bool> recompute(n, false);
    const std::vector<int> layer = layers(g, is_bwd);
    // Values a forward node of another layer reads (the next layer's input, the residual stream).
    std::vector<bool> leaves_layer(g.values.size(), false);
    for (size_t j = 0; j < n; ++j)
      if (!is_bwd[j])
        for (ValueId u : g.nodes[j].inputs)
          if (producer[u] >= 0 && layer[size_t(producer[u])] != layer[j]) leaves_layer[u] = true;
    for (size_t i = 0; i < n; ++i) {
      if (!is_bwd[i] && repeats_attention_exchange(g, g.nodes[i], producer, policy_)) recompute[i] = true;
      if (is_bwd[i] || always_kept(g.nodes[i].op, policy_)) continue;
      if (policy_ == RecomputePolicy::selective) {
        recompute[i] = cheap(g.nodes[i].op);
      } else {
        // layer / full: recompute inside a layer; a value that leaves its layer is kept.
        if (layer[i] < 0) continue;
        bool leaves = false;
        for (ValueId v : g.nodes[i].outputs) leaves = leaves || leaves_layer[v];
        recompute[i] = !leaves;
      }
    }

    // Rebuild: before each backward node, re-emit the recomputed values it reads (and the
    // recomputed values those read), once, in forward order.
    std::vector<ir::Node> nodes = std::move(g.nodes);
    g.nodes.clear();
    std::vector<ir::Node> out;
    std::map<ValueId, ValueId> clone;  // forward value -> its recomputed copy
    int emitted = 0;
    std::function<ValueId(ValueId)> materialize = [&](ValueId v) -> ValueId {
      const int p = producer[v];
      if (p < 0 || is_bwd[size_t(p)] || !recompute[size_t(p)]) return v;
      auto it = clone.find(v);
      if (it != clone.end()) return it->second;
      const ir::Node& src = nodes[size_t(p)];
      std::vector<ValueId> ins;
      for (ValueId x : src.inputs) ins.push_back(materialize(x));
      auto outs = g.add_node(src.op, ins, src.attrs);
      AUTOSP_CHECK(outs.ok()) << outs.status().message();
      out.push_back(std::move(g.nodes.back()));
      g.nodes.pop_back();
      ++emitted;
      for (size_t k = 0; k < src.outputs.size(); ++k) {
        g.values[outs.value()[k]].sharding = g.values[src.outputs[k]].sharding;
        clone[src.outputs[k]] = outs.value()[k];
      }
      return clone[v];
    };
    for (size_t i = 0; i < n; ++i) {
      ir::Node node = nodes[i];
      if (is_bwd[i])
        for (ValueId& v : node.inputs) v = materialize(v);
      out.push_back(std::move(node));
    }
    g.nodes = std::move(out);
    // A forward-only node that autodiff placed in the backward (a reshape of a layer input for
    // a weight gradient) is now dead: its reader reads the recomputed copy. Left in, it would
    // keep the forward value alive to the backward, and offload_activations would park it.
    ir::remove_dead_nodes(g);
    AUTOSP_LOG(1) << "recompute (" << recompute_name(policy_) << "): " << emitted << " forward nodes recomputed in backward";
    return Status::Ok();
  }

 private:
  // Layer index of each forward node: the layer of a parameter it reads ("...layers.<i>." or
  // "...h.<i>."), or -1 for a parameter outside the layers (the final norm, the head: they
  // belong to no layer even though they read the last layer's output); else the layer of
  // its inputs.
  static std::vector<int> layers(const ir::Graph& g, const std::vector<bool>& is_bwd) {
    std::vector<int> value_layer(g.values.size(), -1), out(g.nodes.size(), -1);
    std::vector<bool> is_param(g.values.size(), false);
    for (const ir::Arg& a : g.args) {
      is_param[a.value] = a.role == ir::ArgRole::param;
      const std::string& name = g.values[a.value].name;
      for (const char* key : {".layers.", ".h."}) {
        const size_t at = name.find(key);
        if (at != std::string::npos && a.role == ir::ArgRole::param)
          value_layer[a.value] = std::atoi(name.c_str() + at + std::string(key).size());
      }
    }
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      if (is_bwd[i]) continue;
      int l = -1;
      for (ValueId v : g.nodes[i].inputs)
        if (g.values[v].name.empty() || value_layer[v] >= 0) l = std::max(l, value_layer[v]);
      // A node reading a parameter belongs to that parameter's layer (or to none).
      for (ValueId v : g.nodes[i].inputs)
        if (is_param[v]) l = value_layer[v];
      out[i] = l;
      for (ValueId v : g.nodes[i].outputs) value_layer[v] = l;
    }
    return out;
  }

  RecomputePolicy policy_;
};

}  // namespace

std::unique_ptr<Pass> make_recompute_pass(RecomputePolicy policy) { return std::make_unique<Recompute>(policy); }

}  // namespace autosp::sp
