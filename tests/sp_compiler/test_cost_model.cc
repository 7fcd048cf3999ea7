// The cost model counts what the kernels do: 2·M·N·K for a matmul, 4·B·H·T²·D (half when
// causal) for attention forward and 2.5x that backward, and the collectives' bytes by their
// algorithms; hardware presets are the documented numbers; the optimizer step after the
// program costs its bytes.
#include <catch2/catch.hpp>

#include "ir/builder.h"
#include "sp_compiler/cost_model.h"
#include "sp_compiler/lower.h"

using namespace autosp;

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
  CHECK(sp::predict_step(p, hw, 4, true).exposed_comm_s < c.comm_s);
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
