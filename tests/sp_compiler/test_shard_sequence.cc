// shard_sequence on a one-layer Llama: golden text per strategy (regenerate with
// AUTOSP_UPDATE_GOLDEN=1 after an intended change, and read the diff), collective counts
// forward and backward, the decisions' reasons, and "does nothing" for one rank.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "ir/printer.h"
#include "models/model.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/shard_sequence.h"

using namespace autosp;

namespace {

ir::Graph one_layer(int64_t heads, int64_t kv_heads, bool documents = true, int64_t seq = 16) {
  models::ModelConfig c;
  c.vocab_size = 32;
  c.d_model = 8 * heads;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.ffn_hidden = 24;
  c.n_layers = 1;
  c.max_seq_len = 64;
  return models::build(c, {1, seq, documents}).value();
}

ir::Graph sharded(ir::Graph g, const sp::SpOptions& o) {
  Status s = sp::make_shard_sequence_pass(o)->run(g, {});
  INFO(s.message());
  REQUIRE(s.ok());
  return g;
}

ir::Graph differentiated(ir::Graph g, const sp::SpOptions& o) {
  g = sharded(std::move(g), o);
  REQUIRE(sp::make_autodiff_pass(o.world())->run(g, {}).ok());
  return g;
}

int count(const ir::Graph& g, ir::Op op, size_t from = 0, size_t to = SIZE_MAX) {
  int n = 0;
  for (size_t i = from; i < std::min(to, g.nodes.size()); ++i) n += g.nodes[i].op == op;
  return n;
}

void check_golden(const std::string& name, const std::string& text) {
  const std::string path = std::string(AUTOSP_SOURCE_DIR) + "/tests/sp_compiler/golden/" + name;
  if (std::getenv("AUTOSP_UPDATE_GOLDEN")) {
    std::ofstream(path) << text;
    WARN("wrote " << path);
    return;
  }
  std::ifstream f(path);
  REQUIRE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  CHECK(text == ss.str());
}

}  // namespace

TEST_CASE("shard_sequence matches the golden program for each strategy", "[shard_sequence][golden]") {
  check_golden("ulysses_sp4.ir", ir::print(sharded(one_layer(4, 4), {1, 4, "ulysses"})));
  check_golden("ring_sp4.ir", ir::print(sharded(one_layer(4, 4), {1, 4, "ring"})));
  check_golden("hybrid_2x2.ir", ir::print(sharded(one_layer(4, 2), {1, 4, "hybrid"})));
}

TEST_CASE("Ulysses: 4 all_to_all per attention layer forward and 4 backward", "[shard_sequence]") {
  ir::Graph g = sharded(one_layer(4, 4), {1, 4, "ulysses"});
  const size_t n_forward = g.nodes.size();
  CHECK(count(g, ir::Op::all_to_all) == 4);
  CHECK(count(g, ir::Op::all_gather) == 1);  // segment ids, once for all layers
  CHECK(count(g, ir::Op::all_reduce) == 2);  // loss sum and token count
  CHECK(count(g, ir::Op::ring_attention) == 0);
  REQUIRE(sp::make_autodiff_pass(4)->run(g, {}).ok());
  CHECK(count(g, ir::Op::all_to_all, n_forward) == 4);
  // One all_reduce per parameter gradient (the implicit broadcast's VJP) plus the loss
  // sum's VJP.
  CHECK(count(g, ir::Op::all_reduce, n_forward) == int(g.params().size()) + 1);
}

TEST_CASE("Ring: one ring_attention per layer and its own backward, no all_to_all", "[shard_sequence]") {
  ir::Graph g = differentiated(one_layer(4, 4), {1, 4, "ring"});
  CHECK(count(g, ir::Op::ring_attention) == 1);
  CHECK(count(g, ir::Op::ring_attention_backward) == 1);
  CHECK(count(g, ir::Op::all_to_all) == 0);
  CHECK(g.find_arg(sp::kTokenIndexInput) != ir::kNoValue);  // zigzag: attention needs indices
}

TEST_CASE("hybrid 2x2: all_to_all inside pairs, ring across them", "[shard_sequence]") {
  ir::Graph g = differentiated(one_layer(4, 2), {1, 4, "hybrid"});
  int inner = 0, other = 0;
  for (const auto& n : g.nodes)
    if (n.op == ir::Op::all_to_all) {
      const auto& a = std::get<ir::AllToAllAttrs>(n.attrs);
      (a.group == ir::MeshGroup::sp_inner && a.size == 2 ? inner : other)++;
    }
  CHECK(inner == 8);
  CHECK(other == 0);
  for (const auto& n : g.nodes)
    if (n.op == ir::Op::ring_attention) CHECK(std::get<ir::RingAttentionAttrs>(n.attrs).size == 2);
}

TEST_CASE("the plan explains each decision and falls back when heads do not divide", "[shard_sequence]") {
  auto plan = sp::plan_sequence_parallel(one_layer(6, 6), {1, 4, "ulysses"});
  REQUIRE(plan.ok());
  REQUIRE(plan->attention.size() == 1);
  CHECK(plan->attention[0].strategy == sp::Strategy::ring);
  CHECK(plan->attention[0].reason.find("6 heads") != std::string::npos);
  // GQA with 2 kv heads at sp=4: Ulysses repeats each kv head twice.
  auto gqa = sp::plan_sequence_parallel(one_layer(8, 2), {1, 4, "ulysses"});
  REQUIRE(gqa.ok());
  CHECK(gqa->attention[0].kv_repeat == 2);
  // Uneven sequence: 18 tokens pad to 20 (contiguous, sp=4) or 24 (zigzag needs 2·sp).
  CHECK(sp::plan_sequence_parallel(one_layer(4, 4, true, 18), {1, 4, "ulysses"})->layout.padded == 20);
  CHECK(sp::plan_sequence_parallel(one_layer(4, 4, true, 18), {1, 4, "ring"})->layout.padded == 24);
}

TEST_CASE("zigzag gives rank r chunks r and 2P-1-r; every position lands on exactly one rank", "[shard_sequence]") {
  sp::SeqLayout L{32, 32, 4, 1, true};
  CHECK(L.positions(0) == std::vector<int32_t>{0, 1, 2, 3, 28, 29, 30, 31});
  CHECK(L.positions(3) == std::vector<int32_t>{12, 13, 14, 15, 16, 17, 18, 19});
  sp::SeqLayout H{32, 32, 4, 2, true};  // 2 ring groups of 2: group g holds chunks g and 3-g
  CHECK(H.positions(0) == std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(H.positions(1) == std::vector<int32_t>{24, 25, 26, 27, 28, 29, 30, 31});
  for (const sp::SeqLayout& l : {L, H, sp::SeqLayout{32, 32, 4, 1, false}}) {
    std::vector<int> seen(32, 0);
    for (int r = 0; r < 4; ++r)
      for (int32_t p : l.positions(r)) seen[p]++;
    CHECK(std::count(seen.begin(), seen.end(), 1) == 32);
  }
}

TEST_CASE("shard_sequence leaves a one-rank program unchanged", "[shard_sequence]") {
  ir::Graph g = one_layer(4, 4);
  const std::string before = ir::print(g);
  CHECK(ir::print(sharded(g, {1, 1, "auto"})) == before);
}
