// sp_strategy "auto" compares whole steps: whatever it picks is predicted no slower than any
// strategy forced on every op whose plan fits the same budget. The 1M-token plan is the case
// where each op's least-communication choice (hybrid) is not the fastest step: it needs full
// recompute to fit, and ring fits with layer recompute, so it skips re-running attention.
#include <catch2/catch.hpp>

#include "sp_equivalence.h"
#include "trainer/compile.h"
#include "trainer/plan_report.h"

using namespace autosp;
using autosp::trainer::Compiled;
using autosp::trainer::Options;

namespace {

double step_s(const Compiled& c, const Options& o) {
  return sp::predict_step(c.train, c.hardware, c.mesh.world(), o.parallel.overlap).step_s();
}

// Returns what auto chose; checks it against each forced strategy.
Compiled check_auto_is_fastest(const Options& o, int world, const std::string& hardware) {
  auto c = trainer::compile(o, world, "", hardware);
  REQUIRE(c.ok());
  // In the cases below some strategy fits, so auto's choice must: both budgets, checked here
  // from the plan itself (0 = no limit).
  const int64_t budget = int64_t(o.train.memory_gib * double(1ll << 30));
  const int64_t host_budget = int64_t(o.train.host_memory_gib * double(1ll << 30));
  auto fits = [&](const Compiled& x) {
    return (budget == 0 || trainer::memory_plan(x).total() <= budget) && (host_budget == 0 || x.train.host_bytes <= host_budget);
  };
  CHECK(fits(c.value()));
  CHECK(trainer::fits_budgets(o, c.value()) == fits(c.value()));
  for (const char* strategy : {"ulysses", "ring", "hybrid"}) {
    Options forced = o;
    forced.parallel.sp_strategy = strategy;
    auto f = trainer::compile(forced, world, "", hardware);
    REQUIRE(f.ok());
    CHECK(trainer::fits_budgets(o, f.value()) == fits(f.value()));
    if (!fits(f.value())) continue;
    INFO(strategy << ": " << step_s(f.value(), forced) << " s, auto: " << step_s(c.value(), o) << " s");
    // Within 1% two steps tie, and the plan with less memory wins: auto is never slower by
    // more, and where it is slower at all it needs no more memory.
    CHECK(step_s(c.value(), o) <= step_s(f.value(), forced) * 1.01);
    if (step_s(c.value(), o) > step_s(f.value(), forced) * (1 + 1e-9))
      CHECK(trainer::memory_plan(c.value()).total() <= trainer::memory_plan(f.value()).total());
  }
  return std::move(c).value();
}

}  // namespace

TEST_CASE("the cost model's preset follows train.hardware, the device and the GPU's name", "[plan]") {
  Options o;
  CHECK(trainer::hardware_preset(o, "") == "cpu");
  CHECK(trainer::hardware_preset(o, "NVIDIA H200") == "cpu");  // train.device cpu: the CPU runtime
  o.train.device = "cuda";
  CHECK(trainer::hardware_preset(o, "NVIDIA H200") == "h200");
  CHECK(trainer::hardware_preset(o, "NVIDIA H100 80GB HBM3") == "h100");
  CHECK(trainer::hardware_preset(o, "") == "h100");  // --plan on a machine without the GPU
  o.train.hardware = "h100x8-nvlink";
  CHECK(trainer::hardware_preset(o, "NVIDIA H200") == "h100x8-nvlink");
}

// Within 1% of the fastest predicted step, plans tie and the smaller wins; measured against
// the fastest, not against each other in turn, so a chain of 1% steps cannot drift further.
TEST_CASE("the whole-step choice takes the smallest plan within 1% of the fastest", "[plan]") {
  using trainer::PlanCost;
  CHECK(trainer::pick_plan({{100.0, 10}}) == 0);
  CHECK(trainer::pick_plan({{100.0, 10}, {98.0, 12}}) == 1);       // 2% faster: faster wins
  CHECK(trainer::pick_plan({{100.0, 10}, {99.5, 12}}) == 0);       // a tie: smaller wins
  CHECK(trainer::pick_plan({{100.0, 10}, {100.5, 9}}) == 1);       // a tie, the other way
  CHECK(trainer::pick_plan({{100.0, 10}, {100.9, 9}, {101.7, 8}}) == 1);  // 101.7 is 1.7% off the fastest
  CHECK(trainer::pick_plan({{100.0, 10}, {100.5, 10}}) == 0);      // same memory: the faster
  CHECK(trainer::pick_plan({{101.0, 5}, {100.0, 10}, {100.2, 5}}) == 2);  // smallest, then fastest
}

TEST_CASE("auto's step is predicted no slower than any strategy forced on every op but for ties", "[plan][sp]") {
  SECTION("Llama-3-8B, 1M tokens on two 8-GPU nodes: ring, in less memory than the per-op choice") {
    auto o = trainer::load_options(std::string(AUTOSP_SOURCE_DIR) + "/configs/llama3-8b-1m.json", {});
    REQUIRE(o.ok());
    const Compiled c = check_auto_is_fastest(o.value(), 16, "h100x8-nvlink");
    REQUIRE(!c.plan.attention.empty());
    CHECK(c.plan.attention[0].strategy == sp::Strategy::ring);
    CHECK(c.plan.attention[0].reason.find("whole step") != std::string::npos);
  }
  SECTION("the tiny config over 4 CPU ranks, with and without GQA") {
    for (const char* kv : {"model.n_kv_heads=4", "model.n_kv_heads=2"})
      check_auto_is_fastest(testing::sp_test_options({"parallel.sp=4", kv}), 4, "cpu");
  }
}
