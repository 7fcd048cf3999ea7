// The headline invariant: a model trained under sequence parallelism (ranks as threads over
// the local communicator) gives the same loss and every parameter gradient as one process,
// for each strategy, head layout, packed documents, uneven sequence lengths and dp × sp, at
// 2, 4 and 8 ranks.
// Tolerances: see sp_equivalence.h.
#include <catch2/catch.hpp>
#include <mutex>

#include "runtime/comm.h"
#include "sp_equivalence.h"

using namespace autosp;
using namespace autosp::testing;
using autosp::trainer::Options;
using autosp::trainer::Trainer;

namespace {

// Runs `world` ranks as threads; returns rank 0's record after checking all ranks agree.
StepRecord parallel(const Options& o, int world, int steps) {
  const std::vector<StepRecord> per_rank = record_local(o, world, steps);
  for (int r = 1; r < world; ++r) {
    REQUIRE(per_rank[r].losses == per_rank[0].losses);  // replicated: bit-identical on every rank
    REQUIRE(per_rank[r].grads == per_rank[0].grads);
  }
  return per_rank[0];
}

struct Case {
  const char* name;
  int world;
  std::vector<std::string> sets;
  const char* expect_strategy;
};

}  // namespace

TEST_CASE("sequence-parallel training equals sp=1: loss and every parameter gradient", "[sp][equivalence]") {
  const std::vector<Case> cases = {
      {"ulysses sp=2 MHA", 2, {"parallel.sp=2", "parallel.sp_strategy=ulysses"}, "ulysses"},
      {"ulysses sp=4 MHA", 4, {"parallel.sp=4", "parallel.sp_strategy=ulysses"}, "ulysses"},
      {"ring sp=2", 2, {"parallel.sp=2", "parallel.sp_strategy=ring"}, "ring"},
      {"ring sp=4", 4, {"parallel.sp=4", "parallel.sp_strategy=ring"}, "ring"},
      {"hybrid 2x2", 4, {"parallel.sp=4", "parallel.sp_strategy=hybrid"}, "hybrid"},
      {"ulysses sp=4 GQA kv=2", 4, {"parallel.sp=4", "parallel.sp_strategy=ulysses", "model.n_kv_heads=2"}, "ulysses"},
      {"ring sp=4 GQA kv=2", 4, {"parallel.sp=4", "parallel.sp_strategy=ring", "model.n_kv_heads=2"}, "ring"},
      {"hybrid 2x2 GQA kv=1", 4, {"parallel.sp=4", "parallel.sp_strategy=hybrid", "model.n_kv_heads=1"}, "hybrid"},
      {"6 heads at sp=4 (auto picks hybrid 2x2)", 4, {"parallel.sp=4", "model.n_heads=6", "model.n_kv_heads=6"}, "hybrid"},
      {"6 heads at sp=4 (ulysses falls back)", 4,
       {"parallel.sp=4", "parallel.sp_strategy=ulysses", "model.n_heads=6", "model.n_kv_heads=6"}, "ring"},
      {"no packed documents, ulysses", 2, {"parallel.sp=2", "data.documents=false"}, "ulysses"},
      {"seq_len 62 not divisible, ulysses sp=4", 4,
       {"parallel.sp=4", "parallel.sp_strategy=ulysses", "train.seq_len=62"}, "ulysses"},
      {"seq_len 62 not divisible, ring sp=4", 4,
       {"parallel.sp=4", "parallel.sp_strategy=ring", "train.seq_len=62"}, "ring"},
      {"dp=2 x sp=2, ring", 4, {"parallel.sp=2", "parallel.sp_strategy=ring"}, "ring"},
      {"dp=2 x sp=1", 2, {"parallel.sp=1"}, nullptr},
      {"gpt2, ulysses sp=2", 2, {"parallel.sp=2", "model.arch=gpt2", "model.max_seq_len=64"}, "ulysses"},
      // The largest degree DESIGN.md names: 8 ranks (threads on however many cores there are).
      {"ulysses sp=8, 8 heads", 8,
       {"parallel.sp=8", "parallel.sp_strategy=ulysses", "model.n_heads=8", "model.n_kv_heads=8"}, "ulysses"},
      {"ring sp=8 GQA kv=2", 8, {"parallel.sp=8", "parallel.sp_strategy=ring", "model.n_kv_heads=2"}, "ring"},
      {"hybrid sp=8 (4 heads: ulysses 4 x ring 2)", 8, {"parallel.sp=8", "parallel.sp_strategy=hybrid"}, "hybrid"},
  };
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.name) {
      const Options o = sp_test_options(c.sets);
      const StepRecord ref = record_single(reference_options(o, c.world), 1);
      const StepRecord got = parallel(o, c.world, 1);
      if (c.expect_strategy)
        for (const std::string& s : got.strategies) CHECK(s == c.expect_strategy);
      CHECK(compare_records(ref, got) == "");
    }
  }
}

TEST_CASE("the tiny config: 30 steps at sp=2 follow the sp=1 loss curve", "[sp][equivalence][train]") {
  const Options o = sp_test_options({"parallel.sp=2", "train.steps=30"}, /*full_size=*/true);
  const StepRecord ref = record_single(reference_options(o, 2), 30);
  const StepRecord got = parallel(o, 2, 30);
  CHECK(compare_records(ref, got, 1e-5) == "");
  CHECK(got.losses.back() < got.losses.front() - 1.0);
}
