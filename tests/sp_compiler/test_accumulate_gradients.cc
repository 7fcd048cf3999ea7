// accumulate_gradients: each gradient output becomes "accumulated.<output>" + the gradient,
// whatever ZeRO made of the outputs (per-parameter gradients, whole buckets, shards); the
// other outputs are left alone, and the graph gains exactly one input and one add per
// gradient.
#include <catch2/catch.hpp>

#include <algorithm>
#include <tuple>

#include "ir/printer.h"
#include "models/model.h"
#include "sp_compiler/accumulate_gradients.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/shard_sequence.h"
#include "sp_compiler/zero_shard.h"
#include "tests/sp_compiler/small_llama.h"

using namespace autosp;

namespace {

ir::Graph differentiated(int stage, int world) {
  ir::Graph g = models::build(testing::small_llama(), {1, 8, false}).value();
  REQUIRE(sp::make_shard_sequence_pass({1, world, "ulysses"})->run(g, {}).ok());
  REQUIRE(sp::make_autodiff_pass(world)->run(g, {}).ok());
  REQUIRE(sp::make_zero_shard_pass({stage, world, 64ll << 20})->run(g, {}).ok());
  return g;
}

}  // namespace

TEST_CASE("every gradient output adds onto an input of its own name and type", "[accum]") {
  for (const auto& [stage, world, prefix] : {std::tuple{0, 1, "grad."}, std::tuple{1, 2, "grad_bucket."},
                                             std::tuple{3, 4, "grad_shard."}}) {
    DYNAMIC_SECTION("zero " << stage << " over " << world) {
      const ir::Graph before = differentiated(stage, world);
      ir::Graph g = before;
      REQUIRE(sp::make_accumulate_gradients_pass()->run(g, {}).ok());
      int gradients = 0;
      for (size_t i = 0; i < g.outputs.size(); ++i) {
        const ir::Output& o = g.outputs[i];
        INFO(o.name);
        if (o.name.rfind(prefix, 0) != 0) {
          CHECK(o.value == before.outputs[i].value);  // the loss and count are left alone
          continue;
        }
        ++gradients;
        const ir::ValueId acc = g.find_arg(sp::kAccumulatedPrefix + o.name);
        REQUIRE(acc != ir::kNoValue);
        CHECK(g.type(acc) == g.type(before.outputs[i].value));
        const auto add = std::find_if(g.nodes.begin(), g.nodes.end(),
                                      [&](const ir::Node& n) { return n.outputs[0] == o.value; });
        REQUIRE(add != g.nodes.end());
        CHECK(add->op == ir::Op::add);
        CHECK(add->inputs == std::vector<ir::ValueId>{acc, before.outputs[i].value});
      }
      CHECK(gradients > 0);
      CHECK(g.args.size() == before.args.size() + size_t(gradients));
      CHECK(g.nodes.size() == before.nodes.size() + size_t(gradients));
    }
  }
}
