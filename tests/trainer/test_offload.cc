// train.offload: activations parked in host memory between forward and backward come back as
// exact copies, so every loss and gradient is bit-identical to the run that keeps them on the
// device — alone, under SP and ZeRO-3, in bf16 — while the planned device arena shrinks and
// a step touches no more of it than planned. Under "auto" with a host budget, offloading is
// what makes a too-small device budget fit.
#include <catch2/catch.hpp>

#include "runtime/comm.h"
#include "sp_equivalence.h"
#include "trainer/plan_report.h"

using namespace autosp;
using namespace autosp::testing;
using autosp::trainer::Options;
using autosp::trainer::Trainer;

namespace {

// Activations of 1 MiB and more are offloaded (smaller transfers are not worth a copy): 8
// rows of 512 tokens × 64 features in f32.
std::vector<std::string> with(std::vector<std::string> sets, const std::string& offload) {
  sets.insert(sets.begin(), {"model.d_model=64", "model.ffn_hidden=96", "model.n_layers=4", "train.seq_len=512",
                             "model.max_seq_len=512", "train.batch_size=8"});
  sets.push_back("train.offload=" + offload);
  return sets;
}

}  // namespace

TEST_CASE("offloaded activations leave losses and gradients bit-identical", "[offload]") {
  const std::vector<std::vector<std::string>> cases = {
      {"train.recompute=full"},
      {"train.recompute=layer"},
      {"train.recompute=none", "train.dtype=bf16", "train.batch_size=16"},
  };
  for (const auto& sets : cases) {
    std::string name;
    for (const auto& s : sets) name += s + " ";
    DYNAMIC_SECTION(name) {
      const StepRecord ref = record_single(sp_test_options(with(sets, "none")), 4);
      const Options o = sp_test_options(with(sets, "on"));
      auto t = Trainer::create(o);
      REQUIRE(t.ok());
      CHECK(t.value()->memory_plan().host > 0);
      std::string error;
      const StepRecord got = record_steps(*t.value(), 4, error);
      REQUIRE(error.empty());
      CHECK(got.losses == ref.losses);
      CHECK(got.grads == ref.grads);
      CHECK(t.value()->train_executor().arena_high_water() <= t.value()->memory_plan().train_arena);
      auto keep = trainer::compile(sp_test_options(with(sets, "none")), 1);
      REQUIRE(keep.ok());
      CHECK(t.value()->memory_plan().train_arena < keep.value().train.arena_bytes);
    }
  }
  SECTION("sp 2 x ZeRO-3 over 2 ranks") {
    const std::vector<std::string> sets = {"parallel.sp=2", "parallel.sp_strategy=ulysses", "parallel.zero_stage=3",
                                           "train.recompute=full", "train.batch_size=16"};
    auto c = trainer::compile(sp_test_options(with(sets, "on")), 2);
    REQUIRE(c.ok());
    CHECK(c.value().train.host_bytes > 0);  // each rank's half of the sequence is still worth parking
    CHECK(record_local(sp_test_options(with(sets, "on")), 2, 3)[0].losses ==
          record_local(sp_test_options(with(sets, "none")), 2, 3)[0].losses);
  }
}

TEST_CASE("auto offloads only when the device budget needs it and the host budget allows it", "[offload]") {
  // The smallest device-only plan, then a budget just under it.
  Options o = sp_test_options(with({"train.recompute=full", "train.mlp_chunks=16"}, "none"));
  auto smallest = trainer::compile(o, 1);
  REQUIRE(smallest.ok());
  const int64_t need = trainer::memory_plan(smallest.value()).total();
  Options tight = sp_test_options(with({}, "auto"));
  tight.train.memory_gib = double(need - 1) / double(1ll << 30);
  SECTION("no host budget: nothing fits, nothing is offloaded") {
    auto c = trainer::compile(tight, 1);
    REQUIRE(c.ok());
    CHECK_FALSE(c.value().offload);
    CHECK(c.value().recompute_reason.rfind("even ", 0) == 0);
  }
  SECTION("a host budget: the least recompute that fits with offloading") {
    tight.train.host_memory_gib = 1;
    auto c = trainer::compile(tight, 1);
    REQUIRE(c.ok());
    INFO(c.value().recompute_reason);
    CHECK(c.value().offload);
    CHECK(trainer::memory_plan(c.value()).total() <= need - 1);
    CHECK(c.value().recompute_reason.find("activations offloaded") != std::string::npos);
  }
  SECTION("a host budget too small for any offload") {
    tight.train.host_memory_gib = 1e-6;
    auto c = trainer::compile(tight, 1);
    REQUIRE(c.ok());
    CHECK(c.value().recompute_reason.rfind("even ", 0) == 0);
  }
}

TEST_CASE("the longest planned context keeps offloaded activations within the host budget", "[offload][memory]") {
  Options o = sp_test_options(with({"train.recompute=full"}, "on"));
  o.train.memory_gib = 64.0 / 1024;       // 64 MiB of device memory
  o.train.host_memory_gib = 16.0 / 1024;  // 16 MiB of host memory: the tighter of the two
  auto len = trainer::longest_seq_len(o, 1, int64_t(o.train.memory_gib * double(1ll << 30)), "cpu");
  REQUIRE(len.ok());
  REQUIRE(len.value() > 0);
  auto plan_at = [&](int64_t seq) {
    Options at = o;
    at.train.seq_len = seq;
    at.model.max_seq_len = seq;
    auto c = trainer::compile(at, 1);
    REQUIRE(c.ok());
    return trainer::memory_plan(c.value());
  };
  const trainer::MemoryPlan fits = plan_at(len.value());
  CHECK(fits.host > 0);
  CHECK(fits.host <= int64_t(16) << 20);
  CHECK(fits.total() <= int64_t(64) << 20);
  const trainer::MemoryPlan over = plan_at(len.value() * 5 / 4 / 2 * 2);
  CHECK((over.host > int64_t(16) << 20 || over.total() > int64_t(64) << 20));
}
