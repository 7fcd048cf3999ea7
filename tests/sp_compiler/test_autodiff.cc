#include <catch2/catch.hpp>

#include "ir/builder.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "models/model.h"
#include "sp_compiler/autodiff.h"
#include "tests/sp_compiler/small_llama.h"

using namespace autosp;

namespace {
models::ModelConfig tiny() { return testing::small_llama(2, 1); }
int count(const ir::Graph& g, ir::Op op) {
  int n = 0;
  for (const auto& node : g.nodes) n += node.op == op;
  return n;
}
}  // namespace

TEST_CASE("autodiff adds one gradient output per parameter and keeps the forward graph as it was", "[autodiff]") {
  ir::Graph g = models::build(tiny(), {2, 8, true}).value();
  const std::string before = ir::print(g);
  const size_t n_forward = g.nodes.size();
  REQUIRE(sp::make_autodiff_pass()->run(g, {}).ok());
  for (ir::ValueId p : g.params()) {
    ir::ValueId grad = g.find_output(sp::kGradPrefix + g.values[p].name);
    REQUIRE(grad != ir::kNoValue);
    CHECK(g.type(grad) == g.type(p));
  }
  // The forward prefix is untouched: printing just those nodes gives the same lines.
  ir::Graph prefix = g;
  prefix.nodes.resize(n_forward);
  prefix.outputs.resize(3);
  prefix.args.pop_back();  // d_loss
  CHECK(ir::print(prefix) == before);
  // One backward op per forward op that needs one: 2 layers → 2 attention_backward.
  CHECK(count(g, ir::Op::attention_backward) == 2);
  CHECK(count(g, ir::Op::cross_entropy_backward) == 1);
  CHECK(count(g, ir::Op::rms_norm_backward) == 5);
  // The differentiated graph is plain IR too: it round-trips through the text form.
  const std::string text = ir::print(g);
  auto parsed = ir::parse(text);
  REQUIRE(parsed.ok());
  CHECK(ir::print(parsed.value()) == text);
}

TEST_CASE("autodiff reports what stops it", "[autodiff]") {
  SECTION("no loss output") {
    ir::Graph g;
    ir::Builder b(g);
    b.output("y", b.scale(b.param("w", {2}, {}), 2.0f));
    auto s = sp::make_autodiff_pass()->run(g, {});
    CHECK(s.message().find("no output named 'loss'") != std::string::npos);
  }
  SECTION("a parameter the loss does not depend on") {
    ir::Graph g;
    ir::Builder b(g);
    ir::ValueId w = b.param("w", {2}, {});
    b.param("unused.weight", {3}, {});
    b.output("loss", b.sum(w));
    auto s = sp::make_autodiff_pass()->run(g, {});
    CHECK(s.message().find("unused.weight does not affect the loss") != std::string::npos);
  }
  SECTION("a loss that is not a scalar") {
    ir::Graph g;
    ir::Builder b(g);
    b.output("loss", b.scale(b.param("w", {2}, {}), 2.0f));
    CHECK_FALSE(sp::make_autodiff_pass()->run(g, {}).ok());
  }
}
