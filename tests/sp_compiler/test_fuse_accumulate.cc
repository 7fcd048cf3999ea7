// fuse_accumulate folds exactly the adds of a single-use, non-output matmul result and a
// same-typed operand, places each fused GEMM where it can run, and leaves a training step's
// numbers as they were up to the rounding of one reassociated add.
#include <catch2/catch.hpp>

#include <cmath>

#include "ir/builder.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "models/model.h"
#include "runtime/executor.h"
#include "runtime/params.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/fuse_accumulate.h"
#include "sp_compiler/lower.h"
#include "sp_compiler/recompute.h"
#include "tests/sp_compiler/small_llama.h"

using namespace autosp;
using ir::Op;
using ir::ValueId;

namespace {

void fuse(ir::Graph& g) {
  REQUIRE(sp::make_fuse_accumulate_pass()->run(g, {}).ok());
  Status s = ir::verify(g);
  INFO(s.message());
  REQUIRE(s.ok());
}

int count(const ir::Graph& g, Op op, size_t inputs) {
  int n = 0;
  for (const auto& node : g.nodes) n += node.op == op && node.inputs.size() == inputs;
  return n;
}

// Index of the node producing v.
int producer(const ir::Graph& g, ValueId v) {
  for (int i = 0; i < int(g.nodes.size()); ++i)
    for (ValueId o : g.nodes[i].outputs)
      if (o == v) return i;
  return -1;
}

models::ModelConfig tiny_llama() { return testing::small_llama(4, 2); }

}  // namespace

TEST_CASE("fuse_accumulate folds exactly the eligible adds, each where its GEMM can run", "[fuse]") {
  ir::Graph g;
  ir::Builder b(g);
  const ValueId x = b.input("x", DType::f32, {2, 3, 4}), a = b.input("a", DType::f32, {2, 3, 5});
  const ValueId bias = b.input("bias", DType::f32, {4});
  std::vector<ValueId> w;
  for (int i = 0; i < 9; ++i) w.push_back(b.input("w" + std::to_string(i), DType::f32, {4, 5}));
  auto mm = [&](int i) { return b.linear(a, w[i]); };

  const ValueId y0 = b.add(x, mm(0));  // a residual add: folds at the matmul
  const ValueId m1 = mm(1);             // read twice: stays
  const ValueId y1 = b.add(y0, m1);
  b.output("twice", b.scale(m1, 2.0f));
  const ValueId m2 = mm(2);  // a graph output: stays
  b.output("m2", m2);
  const ValueId y2 = b.add(y1, m2);
  const ValueId y3 = b.add(mm(3), bias);  // broadcast: stays
  const ValueId m4 = mm(4), m5 = mm(5);
  const ValueId inner = b.add(m4, m5);         // m5 accumulates onto m4
  const ValueId outer = b.add(inner, mm(6));  // and m6 onto that
  const ValueId m7 = mm(7);
  const ValueId late = b.silu(y2);
  const ValueId y7 = b.add(m7, late);  // its x comes after the matmul: folds at the add
  // x comes back from host memory: folding at the matmul would wait for the fetch there.
  const ValueId fetched = b.op1(Op::fetch, {b.op1(Op::offload, {x}, ir::NoAttrs{})}, ir::NoAttrs{});
  const ValueId m8 = mm(8);
  const ValueId between = b.silu(y7);
  const ValueId y8 = b.add(fetched, m8);
  b.output("out", b.add(b.add(b.add(y2, y3), b.add(outer, between)), y8));
  const int adds = count(g, Op::add, 2);
  fuse(g);

  CHECK(count(g, Op::add, 2) == adds - 5);
  CHECK(count(g, Op::matmul, 3) == 5);
  CHECK(count(g, Op::matmul, 2) == 4);
  auto inputs = [&](ValueId v) { return g.nodes[size_t(producer(g, v))].inputs; };
  CHECK(inputs(y0) == std::vector<ValueId>{a, w[0], x});
  CHECK(inputs(inner) == std::vector<ValueId>{a, w[5], m4});
  CHECK(inputs(outer) == std::vector<ValueId>{a, w[6], inner});
  CHECK(inputs(y7) == std::vector<ValueId>{a, w[7], late});
  CHECK(producer(g, y0) < producer(g, m1));     // at the matmul's place
  CHECK(producer(g, inner) < producer(g, late));
  CHECK(producer(g, y7) > producer(g, late));   // after its x
  CHECK(inputs(y8) == std::vector<ValueId>{a, w[8], fetched});
  CHECK(producer(g, y8) > producer(g, between));  // at the add's place
  CHECK(g.nodes[size_t(producer(g, y1))].op == Op::add);
  CHECK(g.nodes[size_t(producer(g, y2))].op == Op::add);
  CHECK(g.nodes[size_t(producer(g, y3))].op == Op::add);
}

TEST_CASE("fuse_accumulate leaves a graph without an eligible add unchanged", "[fuse]") {
  ir::Graph g;
  ir::Builder b(g);
  const ValueId a = b.input("a", DType::f32, {3, 5}), w = b.input("w", DType::f32, {4, 5});
  const ValueId m = b.linear(a, w);
  b.output("y", b.add(m, b.input("bias", DType::f32, {4})));
  b.output("z", b.add(m, b.silu(m)));
  const std::string before = ir::print(g);
  fuse(g);
  CHECK(ir::print(g) == before);
}

TEST_CASE("every residual add and backward projection sum of a Llama layer folds", "[fuse]") {
  ir::Graph g = models::build(tiny_llama(), {2, 8, true}).value();
  REQUIRE(sp::make_autodiff_pass()->run(g, {}).ok());
  fuse(g);
  // Forward: the two residual adds. Backward: dX of gate + up, and of q + k + v (two adds).
  CHECK(count(g, Op::matmul, 3) == 2 * (2 + 3));
  // The fused graph prints and parses back as it was (--dump-ir's 06-fuse_accumulate.ir).
  const std::string text = ir::print(g);
  auto parsed = ir::parse(text);
  REQUIRE(parsed.ok());
  CHECK(ir::print(parsed.value()) == text);
}

// One training step (loss and gradients) of a small Llama, with and without the pass. (The
// optimizer is elementwise on the gradients and left out: AdamW's first step is lr·sign(g),
// which turns any difference in a near-zero gradient into 2·lr.)
//
// Tolerance: in f32 a fused GEMM adds its K blocks onto x one by one, where the add summed the
// blocks and then added x: a reassociation of one add, an ulp or two (~1e-7 relative) per
// element, which the rest of the step carries along without amplifying it (measured: ≤ 1.2e-7
// of each gradient's largest element). So 2e-6 of the largest element per
// gradient and 1e-6 relative for the loss. In bf16 a fused output is rounded once instead of
// twice, a difference of up to 2^-9 relative per element that later bf16 ops round further
// (measured: ≤ 0.6% of the largest element): 2e-2 and 1e-4.
TEST_CASE("a training step with fuse_accumulate equals one without it up to rounding", "[fuse]") {
  for (DType dt : {DType::f32, DType::bf16})
    for (auto policy : {sp::RecomputePolicy::none, sp::RecomputePolicy::layer}) {
      DYNAMIC_SECTION(dtype_name(dt) << " recompute " << sp::recompute_name(policy)) {
        const bool f32 = dt == DType::f32;
        models::ModelConfig c = tiny_llama();
        c.ffn_hidden = 600;  // the down projection's K spans more than one of OpenBLAS's K blocks
        ir::Graph g = models::build(c, {2, 64, true, dt}).value();
        REQUIRE(sp::make_autodiff_pass()->run(g, {}).ok());
        REQUIRE(sp::make_recompute_pass(policy)->run(g, {}).ok());
        ir::Graph fused = g;
        fuse(fused);
        REQUIRE(count(fused, Op::matmul, 3) > 0);

        auto backend = runtime::make_cpu_backend();
        struct Step {
          runtime::ParamStore params;
          runtime::Executor ex;
        };
        auto make = [&](const ir::Graph& graph) {
          std::unique_ptr<Step> s(new Step{runtime::ParamStore(runtime::param_specs(graph)),
                                           runtime::Executor(sp::lower(graph).value(), *backend)});
          s->params.initialize(7);
          REQUIRE(s->params.bind(s->ex).ok());
          s->ex.tensor(sp::kLossSeedInput).data<float>()[0] = 1.0f;
          int32_t* tok = s->ex.tensor("tokens").data<int32_t>();
          int32_t* tgt = s->ex.tensor("targets").data<int32_t>();
          int32_t* pos = s->ex.tensor("positions").data<int32_t>();
          int32_t* seg = s->ex.tensor("segments").data<int32_t>();
          for (int i = 0; i < 128; ++i) {
            tok[i] = (i * 7 + 3) % 32;
            tgt[i] = (i * 5 + 1) % 32;
            pos[i] = i % 64 % 40;  // two documents per row
            seg[i] = i % 64 / 40;
          }
          REQUIRE(s->ex.run().ok());
          return s;
        };
        auto plain = make(g), folded = make(fused);

        const double loss = plain->ex.tensor("loss").data<float>()[0];
        CHECK(std::abs(folded->ex.tensor("loss").data<float>()[0] - loss) <= (f32 ? 1e-6 : 1e-4) * std::abs(loss));
        auto close = [&](const std::string& what, const Tensor& want, const Tensor& got) {
          double peak = 0, err = 0;
          for (int64_t i = 0; i < want.numel(); ++i) {
            peak = std::max(peak, double(std::abs(want.data<float>()[i])));
            err = std::max(err, double(std::abs(want.data<float>()[i] - got.data<float>()[i])));
          }
          INFO(what << ": max difference " << err << " of max " << peak);
          CHECK(err <= (f32 ? 2e-6 : 2e-2) * peak);
        };
        for (size_t k = 0; k < plain->params.params().size(); ++k) {
          const runtime::Param& p = plain->params.params()[k];
          const runtime::Param& q = folded->params.params()[k];
          close("grad." + p.spec.name, p.grad, q.grad);
        }
      }
    }
}
