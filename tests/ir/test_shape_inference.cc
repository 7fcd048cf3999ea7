// Shape inference rejects bad operands with a message that names the op, the operand, its
// type and what was expected, and a rejected node leaves the graph untouched.
#include <catch2/catch.hpp>

#include "ir/graph.h"

using namespace autosp;
using namespace autosp::ir;

namespace {

struct G {
  Graph g;
  ValueId in(DType dt, Shape s) { return g.add_arg("a" + std::to_string(g.args.size()), {dt, std::move(s)}, ArgRole::input); }
  ValueId f32(Shape s) { return in(DType::f32, std::move(s)); }
  ValueId i32(Shape s) { return in(DType::i32, std::move(s)); }
  std::string error(Op op, std::vector<ValueId> inputs, Attrs attrs = NoAttrs{}) {
    const size_t values = g.values.size(), nodes = g.nodes.size();
    auto r = g.add_node(op, std::move(inputs), std::move(attrs));
    REQUIRE(!r.ok());
    CHECK(g.values.size() == values);  // nothing half-added
    CHECK(g.nodes.size() == nodes);
    return r.status().message();
  }
};

}  // namespace

TEST_CASE("matmul with mismatched contraction dimensions names operand 1") {
  G t;
  ValueId a = t.f32({2, 8, 3}), b = t.f32({4, 5});
  CHECK(t.error(Op::matmul, {a, b}, MatmulAttrs{}) ==
        "matmul operand 1 (f32[4,5]): expected a contraction dimension of 3");
  CHECK(t.error(Op::matmul, {a, b}, MatmulAttrs{false, true}) ==
        "matmul operand 1 (f32[4,5]): expected a contraction dimension of 3");
  ValueId c = t.f32({3, 2, 5});
  CHECK(t.error(Op::matmul, {a, c}, MatmulAttrs{}) ==
        "matmul operand 1 (f32[3,2,5]): expected the batch dimensions of operand 0");
}

TEST_CASE("matmul's accumulated operand must have the result's type, without broadcasting") {
  G t;
  ValueId a = t.f32({2, 8, 3}), w = t.f32({4, 3});
  ValueId x = t.f32({2, 8, 4}), bias = t.f32({4});
  auto r = t.g.add_node(Op::matmul, {a, w, x}, MatmulAttrs{false, true});
  REQUIRE(r.ok());
  CHECK(t.g.type(r.value()[0]) == t.g.type(x));
  CHECK(t.error(Op::matmul, {a, w, bias}, MatmulAttrs{false, true}) ==
        "matmul operand 2 (f32[4]): expected the result's type, f32[2,8,4]");
  ValueId x16 = t.in(DType::bf16, {2, 8, 4});
  CHECK(t.error(Op::matmul, {a, w, x16}, MatmulAttrs{false, true}) ==
        "matmul operand 2 (bf16[2,8,4]): expected the result's type, f32[2,8,4]");
}

TEST_CASE("attention whose kv heads do not divide the query heads names operand 1") {
  G t;
  ValueId q = t.f32({1, 8, 6, 16}), k = t.f32({1, 8, 4, 16});
  CHECK(t.error(Op::attention, {q, k, k}, AttentionAttrs{}) ==
        "attention operand 1 (f32[1,8,4,16]): expected f32 [batch, seq, kv_heads, head_dim] with kv_heads "
        "dividing 6");
  ValueId v = t.f32({1, 8, 2, 16}), k2 = t.f32({1, 8, 3, 16});
  CHECK(t.error(Op::attention, {q, k2, v}, AttentionAttrs{}) ==
        "attention operand 2 (f32[1,8,2,16]): expected the type of operand 1, f32[1,8,3,16]");
  ValueId seg = t.f32({1, 8});
  CHECK(t.error(Op::attention, {q, k2, k2, seg}, AttentionAttrs{}) ==
        "attention operand 3 (f32[1,8]): expected i32 segment ids [batch, seq]");
}

TEST_CASE("rope with an odd head_dim names operand 0, and bad positions operand 1") {
  G t;
  ValueId x = t.f32({1, 8, 2, 15}), pos = t.i32({1, 8});
  CHECK(t.error(Op::rope, {x, pos}, RopeAttrs{}) ==
        "rope operand 0 (f32[1,8,2,15]): expected f32 or bf16 [batch, seq, heads, head_dim] with an even head_dim");
  ValueId y = t.f32({1, 8, 2, 16}), bad = t.i32({1, 7});
  CHECK(t.error(Op::rope, {y, bad}, RopeAttrs{}) == "rope operand 1 (i32[1,7]): expected i32 positions [batch, seq]");
}

TEST_CASE("cross_entropy with targets not shaped like the hidden states' leading axes names operand 2") {
  G t;
  ValueId h = t.f32({2, 8, 16}), w = t.f32({50, 16}), tgt = t.i32({2, 7});
  CHECK(t.error(Op::cross_entropy, {h, w, tgt}, CrossEntropyAttrs{}) ==
        "cross_entropy operand 2 (i32[2,7]): expected i32 targets [2,8]");
  ValueId ftgt = t.f32({2, 8});
  CHECK(t.error(Op::cross_entropy, {h, w, ftgt}, CrossEntropyAttrs{}) ==
        "cross_entropy operand 2 (f32[2,8]): expected i32 targets [2,8]");
  ValueId w2 = t.f32({50, 15}), ok_tgt = t.i32({2, 8});
  CHECK(t.error(Op::cross_entropy, {h, w2, ok_tgt}, CrossEntropyAttrs{}) ==
        "cross_entropy operand 1 (f32[50,15]): expected f32 [vocab, 16]");
}

TEST_CASE("other ops name the operand at fault") {
  G t;
  ValueId x = t.f32({2, 4, 8}), g = t.f32({4});
  CHECK(t.error(Op::rms_norm, {x, g}, NormAttrs{}) ==
        "rms_norm operand 1 (f32[4]): expected f32[8] (the last axis of operand 0)");
  CHECK(t.error(Op::add, {x, g}) == "add operand 1 (f32[4]): expected f32 with a shape that is a suffix of [2,4,8]");
  CHECK(t.error(Op::reshape, {x}, ShapeAttrs{{8, 9}}) == "reshape operand 0 (f32[2,4,8]): expected as many elements as shape [8,9]");
  CHECK(t.error(Op::reshape, {x}, ShapeAttrs{{-8, -8}}) ==
        "reshape operand 0 (f32[2,4,8]): expected attribute shape without negative extents, not [-8,-8]");
  CHECK(t.error(Op::broadcast, {x}, BroadcastAttrs{{-1, 2, 4, 8}, {0}, 1.0f}) ==
        "broadcast operand 0 (f32[2,4,8]): expected attribute shape without negative extents, not [-1,2,4,8]");
  CHECK(t.error(Op::permute, {x}, PermuteAttrs{{0, 0, 1}}) ==
        "permute operand 0 (f32[2,4,8]): expected a rank matching a permutation of its axes");
  CHECK(t.error(Op::sum, {x}, ReduceAttrs{{3}}) == "sum operand 0 (f32[2,4,8]): expected distinct axes in [0, 3)");
  CHECK(t.error(Op::embedding, {x, g}) == "embedding operand 0 (f32[2,4,8]): expected i32 token ids");
}

TEST_CASE("add_node rejects wrong arity, missing operands and the wrong attribute struct") {
  G t;
  ValueId x = t.f32({2, 4});
  CHECK(t.error(Op::silu, {x, x}) == "silu: got 2 operands, expected 1");
  CHECK(t.error(Op::attention, {x, x}, AttentionAttrs{}) == "attention: got 2 operands, expected 3-5");
  CHECK(t.error(Op::silu, {17}) == "silu: operand %17 does not exist");
  CHECK(t.error(Op::matmul, {x, x}, NormAttrs{}) == "matmul: wrong attribute struct");
}
