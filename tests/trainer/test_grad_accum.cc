// Gradient accumulation (train.grad_accum_steps): an optimizer step's micro-batches add their
// gradients in place (sp_compiler/accumulate_gradients.h) and the loss seed carries
// 1/micro-batches, so a step sees the mean gradient over the same rows as one batch of
// micro × batch_size rows. Micro-batches of equal token counts (no masks here) make the mean
// of their means the batch mean. The runs differ only in the order of f32 sums (a GEMM over
// fewer rows, one add per micro-batch): losses within 1e-5 (per step under ZeRO, the bound of
// test_zero.cc), and the first step's gradients within 1e-5 of each tensor's largest element.
#include <catch2/catch.hpp>

#include <filesystem>

#include "sp_equivalence.h"
#include "tests/test_util.h"

using namespace autosp;
using namespace autosp::testing;
using autosp::trainer::Options;
using autosp::trainer::Trainer;

TEST_CASE("4 micro-batches of 1 row and 2 of 2 train as one batch of 4", "[accum]") {
  const StepRecord ref = record_single(sp_test_options({"train.batch_size=4"}), 6);
  for (const auto& [rows, micro] : {std::pair{"1", "4"}, std::pair{"2", "2"}}) {
    DYNAMIC_SECTION(micro << " micro-batches of " << rows) {
      const StepRecord got = record_single(
          sp_test_options({std::string("train.batch_size=") + rows, std::string("train.grad_accum_steps=") + micro}), 6);
      CHECK(compare_rounded(ref, got, 1e-5, 1e-5) == "");
    }
  }
}

TEST_CASE("under SP and ZeRO 0-3, micro-batches equal one larger batch", "[accum][zero]") {
  for (int stage : {0, 1, 2, 3}) {
    DYNAMIC_SECTION("zero " << stage) {
      // 4 ranks = dp 2 x sp 2, 1 row per micro-batch and replica, 2 micro-batches: 4 rows a step.
      Options o = sp_test_options({"parallel.sp=2", "parallel.sp_strategy=ulysses", "train.batch_size=1",
                                   "train.grad_accum_steps=2"});
      o.parallel.zero_stage = stage;
      Options ref = reference_options(o, 4);
      ref.train.batch_size *= 2;
      ref.train.grad_accum_steps = 1;
      CHECK(compare_losses(record_single(ref, 4).losses, record_local(o, 4, 4)[0].losses, 1e-5) == "");
    }
  }
}

TEST_CASE("a run with micro-batches resumes exactly where it stopped", "[accum][resume]") {
  const std::string dir = scratch_path("accum_ckpt");
  const Options o = sp_test_options({"train.batch_size=1", "train.grad_accum_steps=3", "checkpoint.dir=" + dir});
  const std::vector<double> straight = record_single(o, 6).losses;
  std::vector<double> joined;
  {
    auto t = Trainer::create(o);
    REQUIRE(t.ok());
    std::string error;
    joined = record_steps(*t.value(), 3, error).losses;
    REQUIRE(error.empty());
    REQUIRE(t.value()->save_checkpoint().ok());
  }
  auto t = Trainer::create(o);
  REQUIRE(t.ok());
  REQUIRE(t.value()->resume(dir).ok());
  std::string error;
  for (double l : record_steps(*t.value(), 3, error).losses) joined.push_back(l);
  REQUIRE(error.empty());
  CHECK(joined == straight);
}
