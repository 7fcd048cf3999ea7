#include "sp_compiler/fuse_accumulate.h"

#include "core/log.h"

namespace autosp::sp {

namespace {

using ir::Op;
using ir::ValueId;

class FuseAccumulate final : public Pass {
 public:
  std::string_view name() const override { return "fuse_accumulate"; }

  Status run(ir::Graph& g, const PassContext&) override {
    ValueIndex index(g);  // producer is kept current as adds fold into GEMMs
    std::vector<int>& producer = index.producer;
    const std::vector<int>& uses = index.uses;
    auto foldable = [&](ValueId m, ValueId x) {
      const int p = producer[m];
      return p >= 0 && g.nodes[p].op == Op::matmul && g.nodes[p].inputs.size() == 2 && uses[m] == 1 &&
             g.type(x) == g.type(m);
    };
    // x can be read by the GEMM at node j without waiting longer for anything: not the result
    // of a collective or of a fetch from host memory, which the add waits for later.
    auto ready_at = [&](ValueId x, int j) {
      const int p = producer[x];
      return p < j && (p < 0 || (!ir::is_collective(g.nodes[p].op) && !ir::is_transfer(g.nodes[p].op)));
    };

    // In graph order, so a chain's inner add is already a 3-operand matmul when the outer one
    // is looked at (and then not foldable itself: its x is taken).
    std::vector<bool> drop(g.nodes.size(), false);
    int adds = 0, at_matmul = 0, at_add = 0;
    for (int i = 0; i < int(g.nodes.size()); ++i) {
      if (g.nodes[i].op != Op::add) continue;
      ++adds;
      const ir::Node& add = g.nodes[i];
      // Of two foldable operands, the one whose GEMM can run in its own place; then the later
      // matmul (the other one is its x).
      int pick = -1, pick_j = -1;
      bool pick_early = false;
      for (int k : {0, 1}) {
        const ValueId m = add.inputs[k], x = add.inputs[1 - k];
        if (!foldable(m, x)) continue;
        const int j = producer[m];
        const bool early = ready_at(x, j);
        if (pick < 0 || early > pick_early || (early == pick_early && j > pick_j)) {
          pick = k;
          pick_j = j;
          pick_early = early;
        }
      }
      if (pick < 0) continue;
      const ir::Node& mm = g.nodes[pick_j];
      ir::Node fused{Op::matmul, {mm.inputs[0], mm.inputs[1], add.inputs[1 - pick]}, add.outputs, mm.attrs};
      if (pick_early) {
        producer[add.outputs[0]] = pick_j;
        g.nodes[pick_j] = std::move(fused);
        drop[i] = true;
        ++at_matmul;
      } else {
        g.nodes[i] = std::move(fused);
        drop[pick_j] = true;
        ++at_add;
      }
    }
    std::vector<ir::Node> kept;
    for (size_t i = 0; i < g.nodes.size(); ++i)
      if (!drop[i]) kept.push_back(std::move(g.nodes[i]));
    g.nodes = std::move(kept);
    AUTOSP_LOG(1) << "fuse_accumulate: " << at_matmul + at_add << " of " << adds
                  << " adds fold into a matmul's GEMM as its accumulated operand (" << at_matmul
                  << " at the matmul, " << at_add
                  << " at the add: the other operand is computed later or by a collective); the other "
                  << adds - at_matmul - at_add << " have no single-use matmul operand of their own type";
    return Status::Ok();
  }
};

}  // namespace

std::unique_ptr<Pass> make_fuse_accumulate_pass() { return std::make_unique<FuseAccumulate>(); }

}  // namespace autosp::sp
