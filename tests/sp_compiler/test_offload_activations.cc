// offload_activations: every forward value the backward reads goes to host memory right after
// it is computed and comes back once, before its first backward reader; the backward reads
// only the copy. Lowered, the copies live in the host arena, every fetch is issued after the
// last offload (not back on the device while the forward still runs), and the device arena
// shrinks by what was parked.
#include <catch2/catch.hpp>

#include <map>

#include "models/model.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/lower.h"
#include "sp_compiler/offload_activations.h"
#include "sp_compiler/recompute.h"
#include "tests/sp_compiler/small_llama.h"

using namespace autosp;

namespace {

ir::Graph differentiated(sp::RecomputePolicy policy, bool offload) {
  models::ModelConfig c = testing::small_llama();
  c.n_layers = 4;
  ir::Graph g = models::build(c, {1, 64, false}).value();
  REQUIRE(sp::make_autodiff_pass()->run(g, {}).ok());
  REQUIRE(sp::make_recompute_pass(policy)->run(g, {}).ok());
  if (offload) REQUIRE(sp::make_offload_activations_pass(/*min_bytes=*/1024)->run(g, {}).ok());
  return g;
}

}  // namespace

TEST_CASE("kept activations go to host memory after the forward and come back once for the backward",
          "[offload]") {
  for (auto policy : {sp::RecomputePolicy::full, sp::RecomputePolicy::layer}) {
    DYNAMIC_SECTION(sp::recompute_name(policy)) {
      const ir::Graph g = differentiated(policy, true);
      // Where each value comes from, and the first node that depends on the loss seed.
      std::map<ir::ValueId, size_t> producer;
      for (size_t i = 0; i < g.nodes.size(); ++i)
        for (ir::ValueId v : g.nodes[i].outputs) producer[v] = i;
      std::vector<bool> from_seed(g.values.size(), false);
      from_seed[g.find_arg(sp::kLossSeedInput)] = true;
      size_t backward_start = g.nodes.size();
      for (size_t i = 0; i < g.nodes.size(); ++i) {
        bool dep = false;
        for (ir::ValueId v : g.nodes[i].inputs) dep = dep || from_seed[v];
        for (ir::ValueId v : g.nodes[i].outputs) from_seed[v] = dep;
        if (dep && backward_start == g.nodes.size()) backward_start = i;
      }
      std::map<ir::ValueId, ir::ValueId> parked;  // original -> host copy
      std::map<ir::ValueId, int> fetches;          // host copy -> fetches of it
      for (const ir::Node& n : g.nodes) {
        if (n.op == ir::Op::offload) {
          CHECK(producer.at(n.inputs[0]) < backward_start);
          parked[n.inputs[0]] = n.outputs[0];
        }
        if (n.op == ir::Op::fetch) fetches[n.inputs[0]]++;
      }
      REQUIRE(!parked.empty());
      // Under full recompute the backward keeps only the layers' inputs (the embedding's output
      // and each layer's last add) and the final norm's output, which the head reads outside
      // any layer. (A forward value read only by a dead node, one recompute left behind, must
      // not be parked: it was, for every weight gradient's reshaped input.)
      if (policy == sp::RecomputePolicy::full) CHECK(parked.size() == 4 + 2);
      for (const auto& [v, h] : parked) CHECK(fetches[h] == 1);
      // After the backward starts, nothing reads an original that was parked.
      for (size_t i = backward_start; i < g.nodes.size(); ++i)
        for (ir::ValueId v : g.nodes[i].inputs)
          if (g.nodes[i].op != ir::Op::offload) CHECK(!parked.count(v));

      auto p = sp::lower(g);
      REQUIRE(p.ok());
      CHECK(p.value().host_bytes > 0);
      int last_offload = -1, first_fetch = int(p.value().instrs.size());
      for (int i = 0; i < int(p.value().instrs.size()); ++i) {
        const ir::Instr& ins = p.value().instrs[size_t(i)];
        if (ins.op == ir::Op::offload) {
          last_offload = i;
          CHECK(p.value().slots[size_t(ins.out[0])].kind == ir::Slot::Kind::host);
        }
        if (ins.op == ir::Op::fetch) first_fetch = std::min(first_fetch, i);
      }
      CHECK(last_offload < first_fetch);
      auto without = sp::lower(differentiated(policy, false));
      REQUIRE(without.ok());
      CHECK(p.value().arena_bytes < without.value().arena_bytes);
    }
  }
}

TEST_CASE("a forward-only graph has nothing to offload", "[offload]") {
  ir::Graph g = models::build(testing::small_llama(), {1, 64, false}).value();
  const size_t nodes = g.nodes.size();
  REQUIRE(sp::make_offload_activations_pass(0)->run(g, {}).ok());
  CHECK(g.nodes.size() == nodes);
}

TEST_CASE("weights cast for the backward stay on the device: only the step's data goes out", "[offload][bf16]") {
  ir::Graph g = models::build(testing::small_llama(), {1, 64, false, DType::bf16}).value();
  REQUIRE(sp::make_autodiff_pass()->run(g, {}).ok());
  REQUIRE(sp::make_offload_activations_pass(/*min_bytes=*/0)->run(g, {}).ok());
  int casts_of_parameters = 0, offloads = 0;
  for (const ir::Node& n : g.nodes) {
    const bool of_parameter = n.op == ir::Op::cast && g.values[n.inputs[0]].name.rfind("model.", 0) == 0;
    casts_of_parameters += of_parameter;
    if (n.op != ir::Op::offload) continue;
    ++offloads;
    for (const ir::Node& p : g.nodes)
      if (p.outputs[0] == n.inputs[0]) CHECK_FALSE((p.op == ir::Op::cast && g.values[p.inputs[0]].name.rfind("model.", 0) == 0));
  }
  CHECK(casts_of_parameters > 0);  // the backward reads them (matmul VJPs)
  CHECK(offloads > 0);
}
