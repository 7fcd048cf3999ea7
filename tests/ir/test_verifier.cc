// The verifier accepts what the builder makes and rejects each kind of malformed graph with
// a message naming the node (as printed) and the operand or result at fault.
#include <catch2/catch.hpp>
#include <utility>

#include "ir/builder.h"
#include "ir/printer.h"
#include "ir/verifier.h"

using namespace autosp;
using namespace autosp::ir;

namespace {

// x -> %0 = silu(x) -> %1 = add(%0, x) -> %2 = matmul(%1, w) ; outputs y=%2, h=%0
struct Small {
  Graph g;
  ValueId x, w, s, a, m;
  Small() {
    g.name = "small";
    Builder b(g);
    x = b.input("x", DType::f32, {2, 4});
    w = b.param("w", {4, 3}, {Init::Kind::normal, 0.02f});
    s = b.silu(x);
    a = b.add(s, x);
    m = b.matmul(a, w);
    b.output("y", m);
    b.output("h", s);
  }
  std::string error() const { return verify(g).message(); }
};

}  // namespace

TEST_CASE("the verifier accepts graphs made by the builder") {
  Small s;
  CHECK(verify(s.g).ok());
  Graph g;
  Builder b(g);
  ValueId q = b.input("q", DType::f32, {1, 8, 4, 16});
  ValueId kv = b.input("kv", DType::f32, {1, 8, 2, 16});
  ValueId seg = b.input("seg", DType::i32, {1, 8});
  ValueId head = b.param("head", {10, 16}, {});
  auto att = b.attention(q, kv, kv, seg);
  auto loss = b.cross_entropy(att.o, head, b.input("t", DType::i32, {1, 8, 4}));
  b.output("loss", b.div(loss.sum, loss.count));
  CHECK(verify(g).message() == "");
}

TEST_CASE("the verifier tolerates values that nothing defines or uses") {
  Small s;
  s.g.add_value({DType::f32, Shape{7}});  // e.g. left behind by a pass that deleted a node
  CHECK(verify(s.g).ok());
}

TEST_CASE("a use before the definition (nodes out of topological order) is rejected") {
  Small s;
  std::swap(s.g.nodes[0], s.g.nodes[1]);
  CHECK(s.error() == "verify: node '%0 = add(%1, %x) : f32[2,4]': operand 0 (%1) is used before it is defined");
}

TEST_CASE("a use of a value that nothing defines is rejected") {
  Small s;
  ValueId orphan = s.g.add_value({DType::f32, Shape{2, 4}});
  s.g.nodes[1].inputs[1] = orphan;
  CHECK(s.error() == "verify: node '%1 = add(%0, %?5) : f32[2,4]': operand 1 (%?5) is not defined");
  s.g.nodes[1].inputs[1] = 42;
  CHECK(s.error() == "verify: node '%1 = add(%0, %?42) : f32[2,4]': operand 1 (%?42) does not exist");
}

TEST_CASE("a value defined twice is rejected") {
  SECTION("by two nodes") {
    Small s;
    s.g.nodes[1].outputs[0] = s.s;
    CHECK(s.error() == "verify: node '%0 = add(%0, %x) : f32[2,4]': result 0 is already defined by node "
                       "'%0 = silu(%x) : f32[2,4]'");
  }
  SECTION("by an argument and a node") {
    Small s;
    s.g.nodes[0].outputs[0] = s.w;
    CHECK_THAT(s.error(), Catch::Contains("result 0 is already defined by argument %w"));
  }
  SECTION("by two arguments") {
    Small s;
    s.g.args.push_back({s.x, ArgRole::input, {}});
    CHECK(s.error() == "verify: argument name 'x' is used twice");
  }
}

TEST_CASE("a result whose declared type differs from the inferred type is rejected") {
  Small s;
  s.g.values[s.m].type = {DType::f32, Shape{2, 4}};
  CHECK(s.error() ==
        "verify: node '%2 = matmul(%1, %w) {trans_a=false, trans_b=false} : f32[2,4]': result 0 has type "
        "f32[2,4], but matmul infers f32[2,3]");
}

TEST_CASE("an operand whose type no longer fits the op is rejected with the inference message") {
  Small s;
  s.g.values[s.w].type = {DType::f32, Shape{5, 3}};
  CHECK_THAT(s.error(), Catch::Contains("matmul operand 1 (f32[5,3]): expected a contraction dimension of 4"));
}

TEST_CASE("wrong arity and wrong result counts are rejected") {
  Small s;
  s.g.nodes[0].inputs.push_back(s.x);
  CHECK(s.error() == "verify: node '%0 = silu(%x, %x) : f32[2,4]': has 2 operands, but silu takes 1");
  Small t;
  t.g.nodes[0].outputs.push_back(t.g.add_value({DType::f32, Shape{2, 4}}));
  CHECK_THAT(t.error(), Catch::Contains("has 2 results, but silu produces 1"));
  Small u;
  u.g.nodes[1].inputs.clear();
  CHECK_THAT(u.error(), Catch::Contains("has 0 operands, but add takes 2"));
}

TEST_CASE("an attribute struct that is not the op's is rejected") {
  Small s;
  s.g.nodes[2].attrs = NormAttrs{};
  CHECK(s.error() == "verify: node '%2 = matmul(%1, %w) {eps=1e-05} : f32[2,3]': carries NormAttrs, but "
                     "matmul takes MatmulAttrs");
}

TEST_CASE("output names must be unique and refer to defined values") {
  Small s;
  s.g.add_output("y", s.s);
  CHECK(s.error() == "verify: output name 'y' is used twice");
  Small t;
  t.g.add_output("z", t.g.add_value({DType::f32, Shape{}}));
  CHECK(t.error() == "verify: output 'z' refers to value 5, which is not defined");
}

TEST_CASE("argument names must be non-empty and shardings must name an existing dimension") {
  Small s;
  s.g.values[s.x].name = "";
  CHECK(s.error() == "verify: argument 0 has an empty name");
  Small t;
  t.g.values[t.w].sharding = {ShardKind::shard, 2};
  CHECK(t.error() == "verify: argument %w: sharding shard(2) names a dimension that f32[4,3] does not have");
  Small u;
  u.g.values[u.a].sharding = {ShardKind::shard, -1};
  CHECK_THAT(u.error(), Catch::Contains("node '%1 = add(%0, %x) : f32[2,4]{S:shard(-1)}': result 0: sharding"));
}
