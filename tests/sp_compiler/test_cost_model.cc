// The cost model counts what the kernels do: 2·M·N·K for a matmul, 4·B·H·T²·D (half when
// causal) for attention forward and 2.5x that backward, and the collectives' bytes by their
// algorithms; hardware presets are the documented numbers; the optimizer step after the
// program costs its bytes. Exposed communication is the program's two streams replayed as
// the executor runs them: hand-built programs on round-numbered hardware check the arithmetic.
#include <catch2/catch.hpp>

#include "ir/builder.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/cost_model.h"
#include "sp_compiler/lower.h"
#include "sp_compiler/shard_sequence.h"
#include "sp_compiler/zero_shard.h"
#include "tests/sp_compiler/small_llama.h"

using namespace autosp;

namespace {

// 1 TFLOP/s at full efficiency, 1 GB/s of memory and of every link: an add over 1000 f32
// elements moves 12 kB (12 µs); an all_reduce of them over 2 ranks sends 4 kB (4 µs).
const sp::Hardware kRound{"round", 1e12, 1.0, 1e9, 1e9, 1e9, 8, 1e9, 1.0, 0, true};

int slot(ir::Program& p, Shape s) {
  ir::Slot slot;
  slot.type = {DType::f32, std::move(s)};
  p.slots.push_back(slot);
  return int(p.slots.size()) - 1;
}

// Appends a compute instruction, or (wait_before >= 0) one on the communication stream.
void instr(ir::Program& p, ir::Op op, ir::Attrs a, std::vector<int> in, std::vector<int> out, int wait_before = -1) {
  p.instrs.push_back({op, a, std::move(in), std::move(out), wait_before >= 0 ? ir::Stream::comm : ir::Stream::compute,
                      wait_before});
}

const ir::GroupAttrs kPair{ir::MeshGroup::world, 2};

}  // namespace

TEST_CASE("the cost model counts matmul and attention FLOPs and collective bytes", "[cost]") {
  ir::Graph g;
  ir::Builder b(g);
  ir::ValueId x = b.input("x", DType::f32, {2, 64, 32});
  ir::ValueId w = b.input("w", DType::f32, {48, 32});
  ir::ValueId y = b.linear(x, w);  // 2·(2·64)·48·32 FLOPs
  ir::ValueId q = b.input("q", DType::f32, {1, 128, 4, 16});
  auto att = b.attention(q, q, q, std::nullopt, /*causal=*/true);
  ir::ValueId r = b.op1(ir::Op::all_reduce, {y}, ir::GroupAttrs{ir::MeshGroup::world, 4});
  b.output("r", r);
  b.output("o", att.o);
  const ir::Program p = sp::lower(g).value();
  const sp::Hardware hw = sp::hardware("h100").value();
  const sp::StepCost c = sp::predict_step(p, hw, 4, /*overlap=*/false);
  const double matmul = 2.0 * 128 * 48 * 32, attention = 4.0 * 1 * 4 * 128 * 128 * 16 * 0.5;
  CHECK(c.flops == Approx(matmul + attention).epsilon(1e-12));
  CHECK(c.compute_s == Approx(c.flops / (989e12 * 0.6)));
  // all_reduce of 2·64·48 fp32 elements over 4 ranks, as a ring: 2·(3/4) of the bytes.
  const double bytes = 2.0 * (2 * 64 * 48) * 4.0 * 3.0 / 4.0;
  CHECK(c.comm_s == Approx(bytes / 370e9));
  CHECK(c.exposed_comm_s == c.comm_s);  // no overlap asked
  // Scheduled for overlap, the all_reduce runs while the attention computes.
  CHECK(sp::predict_step(sp::lower(g, {true}).value(), hw, 4, true).exposed_comm_s < c.comm_s);
  CHECK_FALSE(sp::hardware("tpu").ok());
  CHECK(sp::hardware("h200").value().hbm_bw == 4.8e12);
}

// AdamW moves 28 bytes an element at HBM speed; ZeRO 1-2's gather of the updated parameters
// sends (P-1)/P of the gathered bytes (n f32 elements here) over NVLink inside a node and over
// InfiniBand past it.
TEST_CASE("the optimizer step costs AdamW's bytes and, at ZeRO 1-2, the parameter gather", "[cost]") {
  const sp::Hardware hw = sp::hardware("h100x8-nvlink").value();
  const int64_t n = int64_t(1) << 30;
  CHECK(sp::optimizer_step_s(n, 0, hw, 1) == Approx(28.0 * double(n) / 3.35e12));
  CHECK(sp::optimizer_step_s(0, 4 * n, hw, 1) == 0.0);  // nothing to gather from
  CHECK(sp::optimizer_step_s(0, 4 * n, hw, 8) == Approx(4.0 * double(n) * 7 / 8 / 370e9));
  CHECK(sp::optimizer_step_s(0, 4 * n, hw, 16) == Approx(4.0 * double(n) * 15 / 16 / 48e9));
}

// Small GEMMs reach less of the peak than large ones on the CPU (measured there: 120 GFLOP/s
// for 128x128x64, 354 for 1024³, of ~380); GPUs keep one efficiency until measured.
// The cpu preset was measured with both of this machine's cores; a rank gets its cores' part of
// compute and memory bandwidth, nothing else changes.
TEST_CASE("ranks sharing the CPU share its preset", "[cost]") {
  const sp::Hardware cpu = sp::hardware("cpu").value();
  const sp::Hardware half = sp::cpu_share(cpu, 1.0), quarter = sp::cpu_share(cpu, 0.5);
  CHECK(half.peak_flops == Approx(cpu.peak_flops / 2));
  CHECK(half.hbm_bw == Approx(cpu.hbm_bw / 2));
  CHECK(quarter.peak_flops == Approx(cpu.peak_flops / 4));
  CHECK(sp::cpu_share(cpu, 2.0).peak_flops == cpu.peak_flops);
  CHECK(half.intra_bw == cpu.intra_bw);
  CHECK(half.gemm_knee == cpu.gemm_knee);
}

TEST_CASE("GEMM efficiency grows with the GEMM on the CPU and is one constant on GPUs", "[cost]") {
  const sp::Hardware cpu = sp::hardware("cpu").value(), h100 = sp::hardware("h100").value();
  const double tiny = sp::gemm_efficiency(cpu, 128, 128, 64), mid = sp::gemm_efficiency(cpu, 1024, 1024, 1024),
               big = sp::gemm_efficiency(cpu, 8192, 8192, 8192);
  CHECK(tiny < mid);
  CHECK(mid < big);
  CHECK(big <= cpu.matmul_eff);
  // Within 15% of what scripts/bench_cpu_ops.sh measured relative to the 380 GFLOP/s peak.
  CHECK(tiny == Approx(120.0 / 380).epsilon(0.15));
  CHECK(sp::gemm_efficiency(cpu, 512, 512, 512) == Approx(310.0 / 380).epsilon(0.15));
  CHECK(mid == Approx(354.0 / 380).epsilon(0.15));
  CHECK(sp::gemm_efficiency(h100, 128, 128, 64) == sp::gemm_efficiency(h100, 8192, 8192, 8192));
}

TEST_CASE("a collective waited for by the next instruction is fully exposed", "[cost]") {
  ir::Program p;
  const int x = slot(p, {1000}), r = slot(p, {1000}), y = slot(p, {1000});
  instr(p, ir::Op::all_reduce, kPair, {x}, {r}, /*wait_before=*/1);
  instr(p, ir::Op::add, {}, {r, r}, {y});
  const sp::StepCost c = sp::predict_step(p, kRound, 2, true);
  CHECK(c.memory_s == Approx(12e-6));
  CHECK(c.comm_s == Approx(4e-6));
  CHECK(c.exposed_comm_s == Approx(4e-6));
}

TEST_CASE("a collective is hidden by the compute between its issue and its wait", "[cost]") {
  ir::Program p;
  const int x = slot(p, {1000}), r = slot(p, {1000}), y = slot(p, {1000});
  SECTION("longer compute: hidden") {
    const int z = slot(p, {1000}), u = slot(p, {1000});
    instr(p, ir::Op::all_reduce, kPair, {x}, {r}, 2);
    instr(p, ir::Op::add, {}, {z, z}, {u});  // 12 µs
    instr(p, ir::Op::add, {}, {r, r}, {y});
    CHECK(sp::predict_step(p, kRound, 2, true).exposed_comm_s == Approx(0).margin(1e-15));
    CHECK(sp::predict_step(p, kRound, 2, false).exposed_comm_s == Approx(4e-6));  // no overlap: all of it
    // Where communication takes compute's cores, nothing hides it.
    sp::Hardware shared = kRound;
    shared.concurrent_comm = false;
    CHECK(sp::predict_step(p, shared, 2, true).exposed_comm_s == Approx(4e-6));
    CHECK_FALSE(sp::hardware("cpu").value().concurrent_comm);
    CHECK(sp::hardware("h100").value().concurrent_comm);
  }
  SECTION("shorter compute: the rest is exposed") {
    const int z = slot(p, {250}), u = slot(p, {250});
    instr(p, ir::Op::all_reduce, kPair, {x}, {r}, 2);
    instr(p, ir::Op::add, {}, {z, z}, {u});  // 3 µs
    instr(p, ir::Op::add, {}, {r, r}, {y});
    CHECK(sp::predict_step(p, kRound, 2, true).exposed_comm_s == Approx(1e-6));
  }
}

// The communication stream runs its collectives in the order they were handed to it, so a
// small one waited for early still waits behind a large one issued before it.
TEST_CASE("a collective completes only after those issued before it", "[cost]") {
  ir::Program p;
  const int big = slot(p, {10000}), big_r = slot(p, {10000}), x = slot(p, {1000}), r = slot(p, {1000}),
            y = slot(p, {1000});
  instr(p, ir::Op::all_reduce, kPair, {big}, {big_r}, /*wait_before=*/3);  // 40 µs, waited at the end
  instr(p, ir::Op::all_reduce, kPair, {x}, {r}, /*wait_before=*/2);        // 4 µs
  instr(p, ir::Op::add, {}, {r, r}, {y});                                   // 12 µs
  const sp::StepCost c = sp::predict_step(p, kRound, 2, true);
  CHECK(c.comm_s == Approx(44e-6));
  CHECK(c.exposed_comm_s == Approx(44e-6));
  CHECK(c.step_s() == Approx(56e-6));
}

// Ring attention over P=4 blocks of 64 keys (d=16, one head, not causal): 4·64·256·16 FLOPs,
// a = 1.048576 µs / 4 a block; K and V blocks, 8 kB, sent 3 times, b = 8192 B / bandwidth a
// transfer. The step takes 3·max(a, b) + a.
TEST_CASE("ring attention pipelines its blocks with its transfers", "[cost]") {
  ir::Program p;
  const int q = slot(p, {1, 64, 1, 16}), k = slot(p, {1, 64, 1, 16}), v = slot(p, {1, 64, 1, 16}),
            o = slot(p, {1, 64, 1, 16}), lse = slot(p, {1, 1, 64});
  const double compute = 4.0 * 64 * 256 * 16 / 1e12, a = compute / 4;
  const ir::RingAttentionAttrs ring{ir::MeshGroup::sp, 4, /*causal=*/false};
  SECTION("transfers dominate") {
    instr(p, ir::Op::ring_attention, ring, {q, k, v}, {o, lse});
    const double b = 8192 / 1e9;
    const sp::StepCost c = sp::predict_step(p, kRound, 4, true);
    CHECK(c.compute_s == Approx(compute));
    CHECK(c.comm_s == Approx(3 * b));
    CHECK(c.exposed_comm_s == Approx(3 * b + a - compute));
  }
  SECTION("compute dominates: nothing exposed") {
    instr(p, ir::Op::ring_attention, ring, {q, k, v}, {o, lse});
    sp::Hardware fast = kRound;
    fast.intra_bw = 1e11;  // b = 0.08 µs < a
    const sp::StepCost c = sp::predict_step(p, fast, 4, true);
    CHECK(c.exposed_comm_s == Approx(0).margin(1e-15));
    CHECK(c.step_s() == Approx(compute));
  }
  SECTION("its first transfer waits for the communication stream") {
    const int big = slot(p, {10000}), big_r = slot(p, {10000});
    instr(p, ir::Op::all_reduce, kPair, {big}, {big_r}, /*wait_before=*/2);  // 40 µs
    instr(p, ir::Op::ring_attention, ring, {q, k, v}, {o, lse});
    const double b = 8192 / 1e9;
    CHECK(sp::predict_step(p, kRound, 4, true).exposed_comm_s == Approx(40e-6 + 3 * b + a - compute));
  }
}

TEST_CASE("compiled SP programs expose part of their communication with overlap and all without", "[cost][sp]") {
  for (const char* strategy : {"ulysses", "ring"})
    for (int zero : {0, 2})
      for (bool overlap : {true, false}) {
        DYNAMIC_SECTION(strategy << " zero " << zero << (overlap ? " overlap" : " serial")) {
          ir::Graph g = models::build(testing::small_llama(4, 4), {1, 32, true, DType::f32}).value();
          REQUIRE(sp::make_shard_sequence_pass({1, 4, strategy})->run(g, {}).ok());
          REQUIRE(sp::make_autodiff_pass(4)->run(g, {}).ok());
          REQUIRE(sp::make_zero_shard_pass({zero, 4, 64ll << 20})->run(g, {}).ok());
          const ir::Program p = sp::lower(g, {overlap}).value();
          const sp::StepCost c = sp::predict_step(p, sp::hardware("h100").value(), 4, overlap);
          REQUIRE(c.comm_s > 0);
          if (overlap) {
            CHECK(c.exposed_comm_s >= 0);
            CHECK(c.exposed_comm_s < c.comm_s);
          } else {
            CHECK(c.exposed_comm_s == c.comm_s);
          }
        }
      }
}
