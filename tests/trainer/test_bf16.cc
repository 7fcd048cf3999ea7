// bf16 programs (train.dtype = bf16), run by the CPU backend's emulation: f32 parameters
// cast at their use, bf16 activations, f32 gradients. The GPU runs the same program, so
// these tests pin down what the CUDA backend must reproduce.
//
// Tolerances. bf16 keeps 8 significant bits: one rounding is 2^-9 relative, and a value
// reaching the loss or a gradient has been rounded once per op on its path (~10-20 here), in
// directions that mostly cancel. A step's loss is a mean over hundreds of tokens, so its
// error averages down: we allow 1% of the f32 loss. Gradients are compared by their largest
// element: a bf16 gradient must be within 5% of the f32 one's scale. A wrong cast (an f32
// tensor read as bf16, a gradient lost in a cast) is off by O(1), not by percent.
// Sequence parallelism in bf16 reorders f32 sums inside kernels, which can flip single bf16
// roundings; that is well inside the same bounds, which a dropped shard exceeds by far.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "ir/registry.h"
#include "sp_equivalence.h"
#include "trainer/compile.h"

using namespace autosp;
using namespace autosp::testing;
using autosp::trainer::Options;

TEST_CASE("bf16 programs: matmuls and attention in bf16, parameters and their gradients in f32", "[bf16]") {
  const Options o = sp_test_options({"train.dtype=bf16", "train.seq_len=512"});
  auto c = trainer::compile(o, 1, "");
  REQUIRE(c.ok());
  const ir::Program& p = c->train;
  int matmuls = 0;
  for (const ir::Instr& ins : p.instrs)
    if (ins.op == ir::Op::matmul || ins.op == ir::Op::attention || ins.op == ir::Op::attention_backward) {
      ++matmuls;
      for (int s : ins.in)
        if (is_float(p.slots[s].type.dtype) && ins.op == ir::Op::matmul) CHECK(p.slots[s].type.dtype == DType::bf16);
      CHECK(p.slots[ins.out[0]].type.dtype == DType::bf16);
    }
  CHECK(matmuls > 0);
  int grads = 0;
  for (int s : p.outputs) {
    if (p.slots[s].name.rfind("grad.", 0) != 0) continue;
    ++grads;
    CHECK(p.slots[s].type.dtype == DType::f32);
  }
  CHECK(grads == int(p.params.size()));
  for (int s : p.params) CHECK(p.slots[s].type.dtype == DType::f32);
  // Activations take half the bytes: the planned arena shrinks accordingly (the bf16 weight
  // copies it adds are small next to the activations at this size).
  auto f32 = trainer::compile(sp_test_options({"train.seq_len=512"}), 1, "");
  REQUIRE(f32.ok());
  CHECK(double(p.arena_bytes) < 0.6 * double(f32->train.arena_bytes));
}

TEST_CASE("a bf16 step equals the f32 step within bf16 round-off: loss and every gradient", "[bf16]") {
  for (const char* arch : {"llama", "gpt2"}) {
    DYNAMIC_SECTION(arch) {
      const std::vector<std::string> base = {std::string("model.arch=") + arch, "model.max_seq_len=64"};
      std::vector<std::string> bf = base;
      bf.push_back("train.dtype=bf16");
      const StepRecord ref = record_single(sp_test_options(base), 1);
      const StepRecord got = record_single(sp_test_options(bf), 1);
      CHECK(compare_rounded(ref, got, 1e-2, 5e-2) == "");
    }
  }
}

TEST_CASE("bf16 training follows the f32 loss curve over 30 steps", "[bf16][train]") {
  const StepRecord ref = record_single(sp_test_options({"train.steps=30"}), 30);
  const StepRecord got = record_single(sp_test_options({"train.steps=30", "train.dtype=bf16"}), 30);
  for (size_t i = 0; i < ref.losses.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(std::abs(got.losses[i] - ref.losses[i]) <= 2e-2 * ref.losses[i]);
  }
  CHECK(got.losses.back() < 0.8 * got.losses.front());
}

TEST_CASE("bf16 under sequence parallelism equals bf16 at sp=1", "[bf16][sp][equivalence]") {
  const std::vector<std::pair<const char*, std::vector<std::string>>> cases = {
      {"ulysses sp=2", {"parallel.sp=2", "parallel.sp_strategy=ulysses"}},
      {"ring sp=2", {"parallel.sp=2", "parallel.sp_strategy=ring"}},
      {"hybrid 2x2 GQA", {"parallel.sp=4", "parallel.sp_strategy=hybrid", "model.n_kv_heads=2"}},
  };
  for (const auto& [name, sets] : cases) {
    DYNAMIC_SECTION(name) {
      std::vector<std::string> s = sets;
      s.push_back("train.dtype=bf16");
      const Options o = sp_test_options(s);
      const int world = int(o.parallel.sp);
      const StepRecord ref = record_single(reference_options(o, world), 1);
      const StepRecord got = record_local(o, world, 1)[0];
      CHECK(compare_rounded(ref, got, 1e-2, 5e-2) == "");
    }
  }
}
