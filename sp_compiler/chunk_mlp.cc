#include "sp_compiler/chunk_mlp.h"

#include <map>

#include "core/log.h"
#include "ir/builder.h"

namespace autosp::sp {

namespace {

using ir::Op;
using ir::ValueId;

class ChunkMlp final : public Pass {
 public:
  explicit ChunkMlp(int chunks) : chunks_(chunks) {}
  std::string_view name() const override { return "chunk_mlp"; }

  Status run(ir::Graph& g, const PassContext&) override {
    if (chunks_ <= 1) return Status::Ok();
    const ValueIndex index(g);
    const std::vector<int>& producer = index.producer;
    const std::vector<int>& uses = index.uses;
    auto weight_matmul = [&](ValueId v) -> const ir::Node* {  // v = x · wᵀ with a parameter w
      const int p = producer[v];
      if (p < 0 || g.nodes[p].op != Op::matmul || uses[v] != 1) return nullptr;
      const auto& a = std::get<ir::MatmulAttrs>(g.nodes[p].attrs);
      return !a.trans_a && a.trans_b && g.type(g.nodes[p].inputs[1]).shape.rank() == 2 ? &g.nodes[p] : nullptr;
    };

    // Find down(swiglu(gate(h), up(h))): the down projection is the anchor.
    struct Mlp { size_t down; ValueId h, wg, wu, wd, y; std::vector<size_t> old; };
    std::vector<Mlp> found;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const ir::Node& d = g.nodes[i];
      if (d.op != Op::matmul) continue;
      const int s = producer[d.inputs[0]];
      if (s < 0 || g.nodes[s].op != Op::swiglu || uses[d.inputs[0]] != 1) continue;
      const auto& da = std::get<ir::MatmulAttrs>(d.attrs);
      if (da.trans_a || !da.trans_b || g.type(d.inputs[1]).shape.rank() != 2) continue;
      const ir::Node* gate = weight_matmul(g.nodes[s].inputs[0]);
      const ir::Node* up = weight_matmul(g.nodes[s].inputs[1]);
      if (!gate || !up || gate->inputs[0] != up->inputs[0]) continue;
      const ValueId h = gate->inputs[0];
      if (g.type(h).shape.rank() != 3 || g.type(h).shape[1] < chunks_) continue;
      found.push_back({i, h, gate->inputs[1], up->inputs[1], d.inputs[1], d.outputs[0],
                       {size_t(producer[gate->outputs[0]]), size_t(producer[up->outputs[0]]), size_t(s), i}});
    }
    if (found.empty()) return Status::Ok();

    // Rebuild the node list: each MLP's four nodes give way, at the down projection's place,
    // to split → per slice (gate, up, swiglu, down) → concat.
    std::vector<bool> drop(g.nodes.size(), false);
    for (const Mlp& m : found)
      for (size_t k : m.old) drop[k] = true;
    std::vector<ir::Node> nodes = std::move(g.nodes);
    g.nodes.clear();
    std::vector<ir::Node> out;
    ir::Builder b(g);
    auto take = [&]() {  // move the node Builder just appended into `out`
      out.push_back(std::move(g.nodes.back()));
      g.nodes.pop_back();
    };
    size_t next = 0;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (next < found.size() && found[next].down == i) {
        const Mlp& m = found[next++];
        const int64_t T = g.type(m.h).shape[1];
        std::vector<int64_t> sizes;
        for (int k = 0; k < chunks_; ++k) sizes.push_back(T * (k + 1) / chunks_ - T * k / chunks_);
        const ir::Sharding sh = g.values[m.h].sharding;
        auto parts = b.op(Op::split, {m.h}, ir::SplitAttrs{1, sizes});
        take();
        std::vector<ValueId> ys;
        for (ValueId p : parts) {
          g.values[p].sharding = sh;
          ValueId gate = b.linear(p, m.wg);
          take();
          ValueId up = b.linear(p, m.wu);
          take();
          ValueId a = b.swiglu(gate, up);
          take();
          ys.push_back(b.linear(a, m.wd));
          take();
          for (ValueId v : {gate, up, a, ys.back()}) g.values[v].sharding = sh;
        }
        ValueId y = b.op1(Op::concat, ys, ir::ConcatAttrs{1});
        take();
        g.values[y].sharding = g.values[m.y].sharding;
        replace_[m.y] = y;
        continue;
      }
      if (drop[i]) continue;
      ir::Node n = std::move(nodes[i]);
      for (ValueId& v : n.inputs)
        if (auto it = replace_.find(v); it != replace_.end()) v = it->second;
      out.push_back(std::move(n));
    }
    for (ir::Output& o : g.outputs)
      if (auto it = replace_.find(o.value); it != replace_.end()) o.value = it->second;
    g.nodes = std::move(out);
    AUTOSP_LOG(1) << "chunk_mlp: " << found.size() << " MLPs over " << chunks_ << " sequence slices";
    return Status::Ok();
  }

 private:
  int chunks_;
  std::map<ValueId, ValueId> replace_;
};

}  // namespace

std::unique_ptr<Pass> make_chunk_mlp_pass(int chunks) { return std::make_unique<ChunkMlp>(chunks); }

}  // namespace autosp::sp
