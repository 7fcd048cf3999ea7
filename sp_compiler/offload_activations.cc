#include "sp_compiler/offload_activations.h"

#include <set>

#include "core/log.h"
#include "sp_compiler/autodiff.h"

namespace autosp::sp {

namespace {

using ir::Op;
using ir::ValueId;

class OffloadActivations final : public Pass {
 public:
  explicit OffloadActivations(int64_t min_bytes) : min_bytes_(min_bytes) {}
  std::string_view name() const override { return "offload_activations"; }

  Status run(ir::Graph& g, const PassContext&) override {
    const ValueId seed = g.find_arg(kLossSeedInput);
    if (seed == ir::kNoValue) return Status::Ok();  // forward only: nothing waits for a backward
    const size_t n = g.nodes.size();
    const std::vector<bool> is_bwd = backward_phase(g, seed);
    std::vector<int> producer(g.values.size(), -1);
    // Activations depend on the step's data; a value made from parameters alone (a weight's
    // bf16 cast) is not worth a round trip over the host link.
    std::vector<bool> from_data(g.values.size(), false);
    for (const ir::Arg& a : g.args)
      if (a.role == ir::ArgRole::input && a.value != seed) from_data[a.value] = true;
    for (size_t i = 0; i < n; ++i) {
      bool data = false;
      for (ValueId v : g.nodes[i].inputs) data = data || from_data[v];
      for (ValueId v : g.nodes[i].outputs) {
        producer[v] = int(i);
        from_data[v] = data;
      }
    }
    std::set<ValueId> outputs;
    for (const ir::Output& o : g.outputs) outputs.insert(o.value);
    // The forward values a backward node reads, big enough to be worth a transfer.
    std::vector<bool> park(g.values.size(), false);
    for (size_t i = 0; i < n; ++i)
      if (is_bwd[i])
        for (ValueId v : g.nodes[i].inputs) {
          const int p = producer[v];
          if (p < 0 || is_bwd[size_t(p)] || !from_data[v] || outputs.count(v) || ir::is_transfer(g.nodes[size_t(p)].op))
            continue;
          const auto& t = g.type(v);
          if (t.shape.numel() * int64_t(dtype_size(t.dtype)) < min_bytes_) continue;
          park[v] = true;
        }

    std::vector<ir::Node> nodes = std::move(g.nodes);
    g.nodes.clear();
    std::vector<ir::Node> out;
    auto emit = [&](Op op, ValueId in) {
      auto r = g.add_node(op, {in}, ir::NoAttrs{});
      AUTOSP_CHECK(r.ok()) << r.status().message();
      out.push_back(std::move(g.nodes.back()));
      g.nodes.pop_back();
      return r.value()[0];
    };
    std::vector<ValueId> parked(g.values.size(), ir::kNoValue), back(g.values.size(), ir::kNoValue);
    int64_t count = 0, bytes = 0;
    for (size_t i = 0; i < n; ++i) {
      ir::Node node = std::move(nodes[i]);
      if (is_bwd[i])
        for (ValueId& v : node.inputs) {
          if (parked[v] == ir::kNoValue) continue;
          if (back[v] == ir::kNoValue) back[v] = emit(Op::fetch, parked[v]);  // before the first reader
          v = back[v];
        }
      const std::vector<ValueId> produced = node.outputs;
      out.push_back(std::move(node));
      for (ValueId v : produced)
        if (park[v]) {
          parked[v] = emit(Op::offload, v);
          ++count;
          bytes += g.type(v).shape.numel() * int64_t(dtype_size(g.type(v).dtype));
        }
    }
    g.nodes = std::move(out);
    AUTOSP_LOG(1) << "offload_activations: " << count << " activations (" << (bytes >> 20)
                  << " MiB) wait for the backward in host memory";
    return Status::Ok();
  }

 private:
  int64_t min_bytes_;
};

}  // namespace

std::unique_ptr<Pass> make_offload_activations_pass(int64_t min_bytes) {
  return std::make_unique<OffloadActivations>(min_bytes);
}

}  // namespace autosp::sp
