// zero_shard on a differentiated two-layer Llama: buckets follow layers, ZeRO-3 gathers each
// bucket once in forward and once in backward and reduce-scatters it once, and the
// per-parameter gradient all_reduces are gone.
#include <catch2/catch.hpp>

#include "ir/printer.h"
#include "models/model.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/lower.h"
#include "sp_compiler/shard_sequence.h"
#include "sp_compiler/zero_shard.h"
#include "tests/sp_compiler/small_llama.h"

using namespace autosp;

namespace {

ir::Graph two_layers(DType dtype = DType::f32) {
  return models::build(testing::small_llama(), {1, 8, false, dtype}).value();
}

ir::Graph compiled(int stage, int world, DType dtype = DType::f32) {
  ir::Graph g = two_layers(dtype);
  REQUIRE(sp::make_shard_sequence_pass({1, world, "ulysses"})->run(g, {}).ok());
  REQUIRE(sp::make_autodiff_pass(world)->run(g, {}).ok());
  Status s = sp::make_zero_shard_pass({stage, world, 64ll << 20})->run(g, {});
  INFO(s.message());
  REQUIRE(s.ok());
  return g;
}

int count(const ir::Graph& g, ir::Op op) {
  int n = 0;
  for (const auto& node : g.nodes) n += node.op == op;
  return n;
}

}  // namespace

TEST_CASE("buckets: one per layer, the rest before and after, padded to the world size", "[zero]") {
  const ir::BucketPlan p = sp::plan_buckets(two_layers(), {3, 4, 64ll << 20});
  REQUIRE(p.buckets.size() == 4);  // embedding | layer 0 | layer 1 | final norm + lm_head
  CHECK(p.buckets[0].params.size() == 1);
  CHECK(p.buckets[1].params.size() == 9);
  CHECK(p.buckets[3].params.size() == 2);
  for (const ir::Bucket& b : p.buckets) {
    CHECK(b.padded % 4 == 0);
    CHECK(b.padded - b.numel < 4);
  }
  // A small cap splits a layer.
  CHECK(sp::plan_buckets(two_layers(), {3, 4, 2048}).buckets.size() > 4);
}

TEST_CASE("ZeRO-3: one all_gather per layer bucket in forward and one in backward, one reduce_scatter", "[zero]") {
  ir::Graph g = compiled(3, 4);
  const size_t buckets = sp::plan_buckets(two_layers(), {3, 4, 64ll << 20}).buckets.size();
  int forward_gathers = 0, backward_gathers = 0;
  bool in_backward = false;
  const ir::ValueId seed = g.find_arg(sp::kLossSeedInput);
  std::vector<bool> bwd(g.values.size(), false);
  bwd[seed] = true;
  for (const auto& n : g.nodes) {
    bool b = false;
    for (ir::ValueId v : n.inputs) b = b || bwd[v];
    for (ir::ValueId v : n.outputs) bwd[v] = b;
    in_backward = in_backward || b;
    if (n.op == ir::Op::all_gather && std::get<ir::AxisCollectiveAttrs>(n.attrs).group == ir::MeshGroup::world)
      (in_backward ? backward_gathers : forward_gathers)++;
  }
  CHECK(forward_gathers == int(buckets));
  // Every layer bucket again in backward; the embedding's bucket is not, because the
  // embedding's backward reads only tokens and the incoming gradient, never the table.
  CHECK(backward_gathers == int(buckets) - 1);
  CHECK(count(g, ir::Op::reduce_scatter) == int(buckets));
  // Only the loss's all_reduces remain (sum and count forward, the sum's VJP backward).
  CHECK(count(g, ir::Op::all_reduce) == 3);
  for (const auto& a : g.args) CHECK((a.role != ir::ArgRole::param || g.values[a.value].name.rfind("param_shard.", 0) == 0));
  // The program lowers: unpacked parameters are views of the gathered bucket.
  REQUIRE(sp::lower(g).ok());
}

// A bf16 program reads its matrices through casts to bf16 and its norm weights and embedding
// table as f32. At stage 3 each layer splits into a bucket of each kind, the bf16 one is
// gathered in bf16 (its readers' casts are gone), and lowering folds the shard's cast into
// the gather. Forward and differentiated graphs give the same plan: the runtime makes its
// plan from the forward graph and binds the training program's shards by it.
TEST_CASE("ZeRO-3 in bf16: matrices gathered in bf16, norms and embedding in f32", "[zero][bf16]") {
  const ir::Graph fwd = two_layers(DType::bf16);
  const ir::BucketPlan plan = sp::plan_buckets(fwd, {3, 4, 64ll << 20});
  REQUIRE(plan.buckets.size() == 7);  // embedding | 2 x (layer matrices | layer norms) | lm_head | final norm
  int bf16_buckets = 0;
  for (const ir::Bucket& b : plan.buckets) {
    bf16_buckets += b.gather == DType::bf16;
    for (const ir::BucketEntry& e : b.params) {
      const bool read_f32 = e.name.find("norm") != std::string::npos || e.name.find("embed") != std::string::npos;
      INFO(e.name);
      CHECK((b.gather == DType::f32) == read_f32);
    }
  }
  CHECK(bf16_buckets == 3);
  // Stages 1-2 split the same way (they gather the updated buckets); stage 0 gathers nothing,
  // so it keeps one bucket per layer.
  CHECK(sp::plan_buckets(fwd, {2, 4, 64ll << 20}).buckets.size() == 7);
  CHECK(sp::plan_buckets(fwd, {0, 4, 64ll << 20}).buckets.size() == 4);

  ir::Graph g = compiled(3, 4, DType::bf16);
  ir::Graph differentiated = two_layers(DType::bf16);
  REQUIRE(sp::make_shard_sequence_pass({1, 4, "ulysses"})->run(differentiated, {}).ok());
  REQUIRE(sp::make_autodiff_pass(4)->run(differentiated, {}).ok());
  const ir::BucketPlan again = sp::plan_buckets(differentiated, {3, 4, 64ll << 20});
  REQUIRE(again.buckets.size() == plan.buckets.size());
  for (size_t k = 0; k < plan.buckets.size(); ++k) {
    CHECK(again.buckets[k].gather == plan.buckets[k].gather);
    CHECK(again.buckets[k].numel == plan.buckets[k].numel);
  }

  int bf16_gathers = 0;
  std::vector<bool> unpacked(g.values.size(), false);
  for (const auto& n : g.nodes) {
    if (n.op == ir::Op::all_gather && std::get<ir::AxisCollectiveAttrs>(n.attrs).group == ir::MeshGroup::world)
      bf16_gathers += g.type(n.outputs[0]).dtype == DType::bf16;
    if (n.op == ir::Op::unpack)
      for (ir::ValueId v : n.outputs) unpacked[v] = true;
    if (n.op == ir::Op::cast) CHECK(!unpacked[n.inputs[0]]);  // no gathered parameter is cast again
  }
  CHECK(bf16_gathers == 2 * 3);  // forward and backward, each bf16 bucket
  auto p = sp::lower(g);
  REQUIRE(p.ok());
  int converting = 0;
  for (const ir::Instr& ins : p.value().instrs) {
    if (ins.op == ir::Op::all_gather && p.value().slots[ins.out[0]].type.dtype == DType::bf16) {
      CHECK(p.value().slots[ins.in[0]].type.dtype == DType::f32);  // the cast is folded in
      ++converting;
    }
    if (ins.op == ir::Op::cast) CHECK(p.value().slots[ins.in[0]].name.rfind("param_shard.", 0) != 0);
  }
  CHECK(converting == 6);
}

TEST_CASE("ZeRO-1 all-reduces one packed buffer per bucket; ZeRO-2 reduce-scatters it", "[zero]") {
  const size_t buckets = sp::plan_buckets(two_layers(), {1, 2, 64ll << 20}).buckets.size();
  ir::Graph one = compiled(1, 2);
  CHECK(count(one, ir::Op::pack) == int(buckets));
  CHECK(count(one, ir::Op::all_reduce) == int(buckets) + 3);
  CHECK(count(one, ir::Op::reduce_scatter) == 0);
  ir::Graph two = compiled(2, 2);
  CHECK(count(two, ir::Op::reduce_scatter) == int(buckets));
  CHECK(count(two, ir::Op::all_reduce) == 3);
  CHECK(count(two, ir::Op::all_gather) == 0);  // parameters stay whole at stage 2
  CHECK(two.find_output("grad_shard.bucket.0") != ir::kNoValue);
}

// Below stage 3 a rank keeps each bucket whole: a bf16 program's matrices in bf16 (the
// runtime's gather after the update converts the f32 shard). Their arguments are bf16 and
// nothing casts them any more, in the training and the eval graph; their gradients stay f32;
// norms and the embedding stay f32 arguments. Lowering adds no cast of an argument.
TEST_CASE("ZeRO-1/2 in bf16: matrices are bf16 arguments, nothing casts them", "[zero][bf16]") {
  const ir::BucketPlan plan = sp::plan_buckets(two_layers(DType::bf16), {1, 4, 64ll << 20});
  for (int stage : {1, 2})
    for (bool train : {true, false}) {
      DYNAMIC_SECTION("stage " << stage << (train ? " train" : " eval")) {
        ir::Graph g = two_layers(DType::bf16);
        if (train) {
          g = compiled(stage, 4, DType::bf16);
        } else {
          REQUIRE(sp::make_shard_sequence_pass({1, 4, "ulysses"})->run(g, {}).ok());
          REQUIRE(sp::make_zero_shard_pass({stage, 4, 64ll << 20})->run(g, {}).ok());
        }
        int bf16_args = 0;
        for (const ir::Bucket& b : plan.buckets)
          for (const ir::BucketEntry& e : b.params) {
            const ir::ValueId v = g.find_arg(e.name);
            REQUIRE(v != ir::kNoValue);
            CHECK(g.type(v).dtype == b.gather);
            CHECK(g.type(v).shape == e.shape);
            bf16_args += b.gather == DType::bf16;
          }
        CHECK(bf16_args == 2 * 7 + 1);  // 7 matrices per layer, and the LM head
        int casts_of_args = 0;
        for (const auto& n : g.nodes)
          if (n.op == ir::Op::cast)
            for (const ir::Arg& a : g.args) casts_of_args += n.inputs[0] == a.value;
        CHECK(casts_of_args == 0);
        if (train)
          for (const ir::Output& o : g.outputs) CHECK(g.type(o.value).dtype == DType::f32);  // losses, gradients
        auto p = sp::lower(g);
        REQUIRE(p.ok());
      }
    }
}

TEST_CASE("stage 0 all-reduces each bucket's gradients once and keeps per-parameter outputs", "[zero]") {
  const ir::BucketPlan plan = sp::plan_buckets(two_layers(), {0, 2, 64ll << 20});
  ir::Graph g = compiled(0, 2);
  CHECK(count(g, ir::Op::pack) == int(plan.buckets.size()));
  CHECK(count(g, ir::Op::unpack) == int(plan.buckets.size()));
  CHECK(count(g, ir::Op::all_reduce) == int(plan.buckets.size()) + 3);  // + the loss's three
  // The runtime still binds whole per-parameter gradients (ZeRO stage 0 state).
  for (const ir::Bucket& b : plan.buckets)
    for (const ir::BucketEntry& e : b.params) CHECK(g.find_output(std::string(sp::kGradPrefix) + e.name) != ir::kNoValue);
  CHECK(g.find_output("grad_bucket.bucket.0") == ir::kNoValue);
  // One rank: nothing to reduce, the program is autodiff's.
  ir::Graph one = compiled(0, 1);
  ir::Graph plain = two_layers();
  REQUIRE(sp::make_shard_sequence_pass({1, 1, "ulysses"})->run(plain, {}).ok());
  REQUIRE(sp::make_autodiff_pass(1)->run(plain, {}).ok());
  CHECK(ir::print(one) == ir::print(plain));
}
