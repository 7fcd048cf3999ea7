// Every differentiable op's VJP rule, checked against central finite differences through
// autodiff -> lower -> CPU executor (see grad_check.h).
//
// Tolerance: the loss sum(out * R) is O(1) (R ~ N(0, 1/n)). With eps = 1e-2 in fp32 the
// rounding error of each loss evaluation (~1e-6 relative) becomes ~1e-4 after dividing by
// 2·eps, and the truncation error eps²·f'''/6 is ~1e-5 for these smooth ops. So
// atol 1e-3 + rtol 1e-2 leaves a 10x margin, while a wrong rule (missing transpose, wrong
// sign, missed broadcast reduction) is off by O(1).
#include <catch2/catch.hpp>

#include "grad_check.h"

using namespace autosp;
using autosp::testing::grad_check;
using autosp::testing::GradCheckInput;
using ir::Builder;
using ir::ValueId;
using V = std::vector<ValueId>;

namespace {
constexpr double kAtol = 1e-3, kRtol = 1e-2;

GradCheckInput f32(const std::string& name, Shape s) { return {name, {DType::f32, s}, true, {}, {}}; }
GradCheckInput i32(const std::string& name, Shape s, std::vector<int32_t> v) {
  return {name, {DType::i32, s}, false, std::move(v), {}};
}

void expect_ok(const testing::GradCheckResult& r) {
  CHECK(r.checked > 0);
  CHECK(r.max_scaled_err <= 1.0);
}
}  // namespace

// With an accumulated third operand X (fuse_accumulate's C = op(A)·op(B) + X), X's gradient
// is the output's.
TEST_CASE("matmul gradients match finite differences for every transpose combination", "[grad]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool acc : {false, true}) {
        DYNAMIC_SECTION("trans_a=" << ta << " trans_b=" << tb << " accumulate=" << acc) {
          Shape sa = ta ? Shape{2, 5, 3} : Shape{2, 3, 5};
          Shape sb = tb ? Shape{2, 4, 5} : Shape{2, 5, 4};
          std::vector<GradCheckInput> in{f32("a", sa), f32("b", sb)};
          if (acc) in.push_back(f32("x", {2, 3, 4}));
          expect_ok(grad_check(in, [&](Builder& b, const V& v) {
            return b.op1(ir::Op::matmul, v, ir::MatmulAttrs{ta, tb});
          }, kAtol, kRtol));
        }
      }
}

TEST_CASE("matmul with a weight shared by the batch sums its gradient over the batch", "[grad]") {
  for (bool tb : {false, true})
    for (bool acc : {false, true}) {
      Shape sw = tb ? Shape{4, 5} : Shape{5, 4};
      std::vector<GradCheckInput> in{f32("x", {2, 3, 5}), f32("w", sw)};
      if (acc) in.push_back(f32("r", {2, 3, 4}));
      expect_ok(grad_check(in, [&](Builder& b, const V& v) {
        return b.op1(ir::Op::matmul, v, ir::MatmulAttrs{false, tb});
      }, kAtol, kRtol));
    }
}

TEST_CASE("binary ops with suffix broadcasting reduce the broadcast operand's gradient", "[grad]") {
  for (ir::Op op : {ir::Op::add, ir::Op::sub, ir::Op::mul, ir::Op::div}) {
    for (Shape sb : {Shape{2, 3, 4}, Shape{4}, Shape{}}) {
      DYNAMIC_SECTION(ir::op_name(op) << " by " << sb.str()) {
        // div: the denominator is b² + 1, so finite differences stay well conditioned.
        GradCheckInput one{"one", {DType::f32, {}}, false, {}, {1.0f}};
        expect_ok(grad_check({f32("a", {2, 3, 4}), f32("b", sb), one}, [&](Builder& b, const V& v) {
          ValueId rhs = op == ir::Op::div ? b.add(b.mul(v[1], v[1]), v[2]) : v[1];
          return b.op1(op, {v[0], rhs});
        }, kAtol, kRtol));
      }
    }
  }
}

TEST_CASE("scale and the pointwise activations", "[grad]") {
  auto one = [](auto fn) { return grad_check({f32("x", {3, 7})}, fn, kAtol, kRtol); };
  expect_ok(one([](Builder& b, const V& v) { return b.scale(v[0], -1.5f); }));
  expect_ok(one([](Builder& b, const V& v) { return b.silu(v[0]); }));
  expect_ok(one([](Builder& b, const V& v) { return b.gelu(v[0]); }));
  expect_ok(grad_check({f32("gate", {3, 7}), f32("up", {3, 7})},
                       [](Builder& b, const V& v) { return b.swiglu(v[0], v[1]); }, kAtol, kRtol));
}

TEST_CASE("rms_norm and layer_norm gradients for input, gain and bias", "[grad]") {
  expect_ok(grad_check({f32("x", {2, 3, 8}), f32("g", {8})},
                       [](Builder& b, const V& v) { return b.rms_norm(v[0], v[1], 1e-5f); }, kAtol, kRtol));
  expect_ok(grad_check({f32("x", {2, 3, 8}), f32("g", {8}), f32("bias", {8})},
                       [](Builder& b, const V& v) { return b.layer_norm(v[0], v[1], v[2], 1e-5f); }, kAtol, kRtol));
}

TEST_CASE("rope's gradient is the inverse rotation", "[grad]") {
  expect_ok(grad_check({f32("x", {2, 5, 3, 8}), i32("pos", {2, 5}, {0, 1, 2, 3, 4, 7, 100, 9, 1000, 2})},
                       [](Builder& b, const V& v) { return b.rope(v[0], v[1], 10000.0f); }, kAtol, kRtol));
}

TEST_CASE("embedding scatters its gradient into the rows it read, repeated tokens summed", "[grad]") {
  expect_ok(grad_check({i32("tok", {2, 3}, {1, 4, 1, 0, 4, 4}), f32("table", {6, 5})},
                       [](Builder& b, const V& v) { return b.embedding(v[0], v[1]); }, kAtol, kRtol, 1e-2, 30));
}

TEST_CASE("reshape, permute, sum, mean and broadcast", "[grad]") {
  expect_ok(grad_check({f32("x", {2, 3, 4})},
                       [](Builder& b, const V& v) { return b.permute(b.reshape(v[0], {6, 4}), {1, 0}); }, kAtol,
                       kRtol));
  expect_ok(grad_check({f32("x", {2, 3, 4})}, [](Builder& b, const V& v) { return b.sum(v[0], {0, 2}); }, kAtol,
                       kRtol));
  expect_ok(grad_check({f32("x", {2, 3, 4})}, [](Builder& b, const V& v) { return b.mean(v[0], {1}); }, kAtol,
                       kRtol));
  expect_ok(grad_check({f32("x", {3})},
                       [](Builder& b, const V& v) { return b.broadcast(v[0], {2, 3, 4}, {0, 2}, 0.5f); }, kAtol,
                       kRtol));
}

TEST_CASE("attention gradients: causal, non-causal, GQA and packed documents", "[grad]") {
  const int64_t B = 2, T = 7, D = 4;
  std::vector<int32_t> seg = {0, 0, 0, 1, 1, 2, 2, 0, 1, 1, 1, 1, 1, 1};
  struct Case { int64_t H, Hkv; bool causal, docs; };
  for (Case c : {Case{2, 2, true, false}, Case{2, 2, false, false}, Case{4, 2, true, false}, Case{4, 1, true, true},
                 Case{2, 2, false, true}}) {
    DYNAMIC_SECTION("H=" << c.H << " Hkv=" << c.Hkv << " causal=" << c.causal << " docs=" << c.docs) {
      std::vector<GradCheckInput> in = {f32("q", {B, T, c.H, D}), f32("k", {B, T, c.Hkv, D}),
                                        f32("v", {B, T, c.Hkv, D})};
      if (c.docs) in.push_back(i32("seg", {B, T}, seg));
      expect_ok(grad_check(in, [&](Builder& b, const V& v) {
        std::optional<ValueId> s;
        if (c.docs) s = v[3];
        return b.attention(v[0], v[1], v[2], s, c.causal).o;
      }, kAtol, kRtol));
    }
  }
}

TEST_CASE("fused cross-entropy: gradient of the loss sum for hidden states and head, ignored rows excluded",
          "[grad]") {
  // 3 vocabulary chunks of 4 (V = 11 is not a multiple of the chunk) and one ignored target.
  expect_ok(grad_check({f32("h", {2, 3, 6}), f32("w", {11, 6}), i32("t", {2, 3}, {3, 10, -1, 0, 7, 7})},
                       [](Builder& b, const V& v) { return b.cross_entropy(v[0], v[1], v[2], -1, 4).sum; }, kAtol,
                       kRtol));
}

TEST_CASE("a value used twice gets the sum of both gradients", "[grad]") {
  expect_ok(grad_check({f32("x", {3, 4}), f32("w", {4, 4})}, [](Builder& b, const V& v) {
    ValueId y = b.matmul(v[0], v[1]);
    return b.add(b.mul(y, v[0]), b.silu(y));
  }, kAtol, kRtol));
}

TEST_CASE("split and concat along an axis: gradients go back to their slices", "[grad]") {
  expect_ok(grad_check({f32("x", {2, 7, 3}), f32("w", {3})}, [](Builder& b, const V& v) {
    auto parts = b.op(ir::Op::split, {v[0]}, ir::SplitAttrs{1, {2, 4, 1}});
    // Each slice transformed differently, so a gradient landing in the wrong slice shows.
    return b.op1(ir::Op::concat, {b.silu(parts[0]), b.mul(parts[1], v[1]), b.scale(parts[2], 3.0f)},
                 ir::ConcatAttrs{1});
  }, kAtol, kRtol));
}
