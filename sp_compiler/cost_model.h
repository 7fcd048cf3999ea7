// The cost model: per-hardware constants and a step-time prediction for a lowered program,
// from its FLOPs (matmul, attention, fused cross-entropy), the bytes its memory-bound ops
// move, and the bytes its collectives send over the links their group spans. How much of
// the communication the step waits for comes from replaying the program's two streams with
// those durations, as the executor runs them. Used by `--plan --hardware` (predicted step
// time and MFU) and by sp_strategy "auto" (whole-step comparison of strategies).
#pragma once
#include <string>

#include "core/status.h"
#include "ir/program.h"

namespace autosp::sp {

struct Hardware {
  std::string name;
  double peak_flops;     // dense matmul FLOP/s per rank (bf16 on GPUs, fp32 on the CPU)
  double matmul_eff;     // fraction of peak large GEMMs reach
  double hbm_bw;         // memory bandwidth per rank, bytes/s (memory-bound ops)
  double intra_bw;       // per-rank all-to-all / ring bandwidth inside a node, bytes/s
  double inter_bw;       // per-rank bandwidth across nodes (one NIC per rank), bytes/s
  int ranks_per_node;
  double host_bw;        // device <-> host copies per rank (offloaded activations), bytes/s
  double attention_eff;  // fraction of peak flash attention (and the fused cross-entropy) reaches
  // Small GEMMs run below matmul_eff: an M×N×K GEMM reaches matmul_eff · g / (g + knee), g the
  // geometric mean of M, N, K. 0: every GEMM reaches matmul_eff.
  double gemm_knee;
  // Whether communication runs beside compute without slowing it: NCCL has its own SMs and
  // copy engines; the CPU's MPI moves bytes with the rank's own cores (shared-memory copies),
  // so a collective overlapped there slows compute by about as long as it hides.
  bool concurrent_comm;
};

// Fraction of peak an M×N×K GEMM reaches on hw.
double gemm_efficiency(const Hardware& hw, double m, double n, double k);

// "cpu" (this 2-core class of machine, fp32), "h100", "h200", "h100x8-nvlink". Numbers:
// 989 TFLOP/s dense bf16; HBM 3.35 TB/s (H100) and 4.8 TB/s (H200); NVLink all-to-all bus
// bandwidth ~370 GB/s per GPU; InfiniBand 400 Gb/s ~48 GB/s per NIC; 8 GPUs per node; the
// host link PCIe 5.0 x16, ~50 GB/s each way sustained (a CPU "copies" at ~10 GB/s).
StatusOr<Hardware> hardware(const std::string& name);

struct StepCost {
  double flops = 0;           // executed (recompute included)
  double compute_s = 0;       // matmul-class work at peak × efficiency
  double memory_s = 0;        // memory-bound ops at HBM bandwidth
  double comm_s = 0;          // all collectives (and host transfers, at host_bw), serially
  double exposed_comm_s = 0;  // the simulated step's end beyond compute_s + memory_s
  double optimizer_s = 0;     // after the program (optimizer_step_s); predict_step leaves it 0
  double step_s() const { return compute_s + memory_s + exposed_comm_s + optimizer_s; }
};

// Bytes one rank sends for a communication instruction (0 for others), by the algorithm each
// collective uses: all_to_all keeps 1/P of its input; all_gather sends its piece to P-1
// peers; reduce_scatter and all_reduce run as rings ((P-1)/P of the data, twice for
// all_reduce) in fp32; a ring attention sends its K/V block P-1 times (the backward also the
// dK/dV accumulators). Tensors count their dtype's size (bf16 activations in a bf16 program).
double comm_bytes(const ir::Program& p, const ir::Instr& ins);

// `world` ranks. With overlap, the step's length is simulated as runtime/executor.cc runs
// p: instructions in list order on the compute stream, each taking its compute plus memory
// time (and its whole communication time if it is a collective left on that stream);
// comm-stream instructions queued, when the compute stream reaches them, on one FIFO stream
// whose k-th completes k-th; the compute stream waiting before each instruction for as many
// of them as the instructions up to it need (their wait_before), and for all at the end.
// Ring attention stays on the compute stream, pipelined: P steps each attending to one block
// while the next block's transfer runs, (P-1)·max(compute/P, comm/(P-1)) + compute/P, its
// transfers starting no earlier than the communication stream is free (they share the link;
// NCCL orders them after what was queued). Without overlap all communication is exposed.
StepCost predict_step(const ir::Program& p, const Hardware& hw, int world, bool overlap);

// The cpu preset for a rank that keeps `cores` cores busy: its compute and memory bandwidth
// were measured with both cores of this 2-core machine, and a rank gets its share of them (two
// ranks here: half each). Linear beyond 2 cores: on a larger machine, an extrapolation.
Hardware cpu_share(Hardware cpu, double cores);

// The optimizer step, which runs after the program (runtime/param_state.h): AdamW over
// `updated` f32 elements on each rank, memory-bound (it reads the parameter, its gradient and
// both moments and writes all but the gradient: 28 bytes an element), then at ZeRO stages 1-2
// the all_gather that fills `gathered_bytes` of whole buckets (f32, or bf16 for a bf16
// program's matrices; BucketPlan::update_gather_bytes) over the `world` ranks, which nothing
// overlaps.
double optimizer_step_s(int64_t updated, int64_t gathered_bytes, const Hardware& hw, int world);

}  // namespace autosp::sp
