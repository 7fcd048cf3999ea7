#include "sp_compiler/autodiff.h"

#include "core/log.h"
#include "ir/builder.h"
#include "ir/registry.h"

namespace autosp::sp {

namespace {

using ir::ValueId;
using ir::kNoValue;

class Autodiff final : public Pass {
 public:
  explicit Autodiff(int world) : world_(world) {}
  std::string_view name() const override { return "autodiff"; }

  Status run(ir::Graph& g, const PassContext&) override {
    const ValueId loss = g.find_output(kLossOutput);
    if (loss == kNoValue) return InvalidArgument("the graph has no output named '" + std::string(kLossOutput) + "'");
    if (g.type(loss) != ir::TensorType{DType::f32, Shape{}})
      return InvalidArgument("output 'loss' must be an f32 scalar, got " + g.type(loss).str());
    if (g.find_arg(kLossSeedInput) != kNoValue) return InvalidArgument("the graph is already differentiated");

    const size_t n_values = g.values.size();
    // needs[v]: v depends on a parameter, so its gradient is wanted.
    std::vector<bool> needs(n_values, false);
    for (ValueId p : g.params()) needs[p] = true;
    for (const ir::Node& n : g.nodes) {
      bool any = false;
      for (ValueId v : n.inputs) any = any || needs[v];
      const uint32_t nondiff = ir::op_info(n.op).nondiff_outputs;
      for (size_t k = 0; k < n.outputs.size(); ++k) needs[n.outputs[k]] = any && !(nondiff >> k & 1u);
    }
    // reaches[v]: the loss depends on v. Only nodes on a param→loss path get a VJP.
    std::vector<bool> reaches(n_values, false);
    reaches[loss] = true;
    for (auto it = g.nodes.rbegin(); it != g.nodes.rend(); ++it) {
      bool any = false;
      for (ValueId v : it->outputs) any = any || reaches[v];
      if (any)
        for (ValueId v : it->inputs) reaches[v] = true;
    }

    ir::Builder b(g);
    std::vector<ValueId> grad(n_values, kNoValue);
    grad[loss] = b.input(kLossSeedInput, DType::f32, Shape{});
    // Nodes appended below must not be visited: iterate over the forward nodes only, by index
    // (the vector grows while VJP rules emit into it).
    const size_t n_forward = g.nodes.size();
    for (size_t i = n_forward; i-- > 0;) {
      const ir::Node node = g.nodes[i];  // copy: emitting may reallocate g.nodes
      std::vector<ValueId> og;
      bool any_out = false;
      for (ValueId v : node.outputs) {
        og.push_back(grad[v]);
        any_out = any_out || grad[v] != kNoValue;
      }
      std::vector<bool> in_needs;
      bool any_in = false;
      for (ValueId v : node.inputs) {
        in_needs.push_back(needs[v] && reaches[v]);
        any_in = any_in || in_needs.back();
      }
      if (!any_out || !any_in) continue;
      const ir::OpInfo& info = ir::op_info(node.op);
      if (!info.vjp) return InvalidArgument(std::string(info.name) + " is not differentiable, but the loss depends on it");
      std::vector<ValueId> ig(node.inputs.size(), kNoValue);
      RETURN_IF_ERROR(info.vjp(b, node, og, in_needs, ig));
      for (size_t k = 0; k < node.inputs.size(); ++k) {
        if (!in_needs[k] || ig[k] == kNoValue) continue;
        ValueId v = node.inputs[k];
        AUTOSP_CHECK(g.type(ig[k]) == g.type(v)) << "VJP of " << info.name << " gave " << g.type(ig[k]).str()
                                                 << " for operand " << k << " of type " << g.type(v).str();
        // A value with several consumers receives the sum of their contributions.
        grad[v] = grad[v] == kNoValue ? ig[k] : b.add(grad[v], ig[k]);
      }
    }
    for (const ir::Arg& a : g.args) {
      if (a.role != ir::ArgRole::param) continue;
      const std::string& pname = g.values[a.value].name;
      if (grad[a.value] == kNoValue)
        return InvalidArgument("parameter " + pname + " does not affect the loss, so it can never be trained");
      ValueId gv = grad[a.value];
      if (world_ > 1 && g.values[a.value].sharding.kind == ir::ShardKind::replicate) {
        gv = b.op1(ir::Op::all_reduce, {gv}, ir::GroupAttrs{ir::MeshGroup::world, world_});
        g.values[gv].sharding = {ir::ShardKind::replicate, -1};
      }
      g.add_output(kGradPrefix + pname, gv);
    }
    AUTOSP_LOG(1) << "autodiff: " << n_forward << " forward nodes, " << g.nodes.size() - n_forward
                  << " backward nodes";
    return Status::Ok();
  }

 private:
  int world_;
};

}  // namespace

std::unique_ptr<Pass> make_autodiff_pass(int world_size) { return std::make_unique<Autodiff>(world_size); }

std::vector<bool> backward_phase(const ir::Graph& g, ir::ValueId seed) {
  std::vector<bool> from_seed(g.values.size(), false), phase(g.nodes.size(), false);
  if (seed != ir::kNoValue) from_seed[seed] = true;
  bool in_backward = false;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (ir::ValueId v : g.nodes[i].inputs) in_backward = in_backward || from_seed[v];
    phase[i] = in_backward;
    for (ir::ValueId v : g.nodes[i].outputs) from_seed[v] = in_backward;
  }
  return phase;
}

}  // namespace autosp::sp
