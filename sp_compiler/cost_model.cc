#include "sp_compiler/cost_model.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace autosp::sp {

StatusOr<Hardware> hardware(const std::string& name) {
  // cpu: measured here (scripts/bench_cpu_ops.sh --quick, 2 threads): sgemm ~380 GFLOP/s at
  // 2048³, 354 at 1024³, 310 at 512³ and 120 for 128×128×64 (a knee of 180 fits those within
  // 15%); attention fwd+bwd ~170 GFLOP/s, 45% of it; ~15 GB/s memory; MPI over shared memory
  // ~5 GB/s per rank. GPUs: one efficiency for GEMMs of every size and for attention until
  // a device check measures them.
  if (name == "cpu") return Hardware{"cpu", 380e9, 1.0, 15e9, 5e9, 5e9, 1 << 20, 10e9, 0.45, 180, false};
  if (name == "h100" || name == "h100x8-nvlink")
    return Hardware{name, 989e12, 0.6, 3.35e12, 370e9, 48e9, 8, 50e9, 0.6, 0, true};
  if (name == "h200") return Hardware{"h200", 989e12, 0.6, 4.8e12, 370e9, 48e9, 8, 50e9, 0.6, 0, true};
  return InvalidArgument("--hardware: unknown \"" + name + "\" (expected cpu, h100, h200 or h100x8-nvlink)");
}

namespace {

double elems(const ir::Program& p, int s) { return double(p.slots[s].type.shape.numel()); }
double bytes(const ir::Program& p, int s) { return elems(p, s) * double(dtype_size(p.slots[s].type.dtype)); }

// A group of P ranks spans nodes when P exceeds a node (SP groups are consecutive ranks).
double bandwidth(const Hardware& hw, ir::MeshGroup g, int64_t size, int world) {
  const int64_t span = g == ir::MeshGroup::sp_outer ? size * (world / std::max<int64_t>(size, 1)) : size;
  return span > hw.ranks_per_node || (g == ir::MeshGroup::world && world > hw.ranks_per_node) ? hw.inter_bw
                                                                                             : hw.intra_bw;
}

int64_t group_size(const ir::Attrs& a) {
  return std::visit(
      [](const auto& s) -> int64_t {
        if constexpr (requires { s.size; })
          return s.size;
        else
          return 1;
      },
      a);
}

}  // namespace

double comm_bytes(const ir::Program& p, const ir::Instr& ins) {
  const double P = double(group_size(ins.attrs));
  const auto& in = ins.in;
  switch (ins.op) {
    case ir::Op::all_to_all: return bytes(p, in[0]) * (P - 1) / P;
    // Counted on the result: a gather may convert its f32 input to bf16 (lower.cc folds the cast).
    case ir::Op::all_gather: return bytes(p, ins.out[0]) * (P - 1) / P;
    case ir::Op::reduce_scatter: return bytes(p, in[0]) * (P - 1) / P;
    case ir::Op::all_reduce: return 2.0 * bytes(p, in[0]) * (P - 1) / P;
    case ir::Op::send_recv: return bytes(p, in[0]);
    case ir::Op::offload:
    case ir::Op::fetch: return bytes(p, in[0]);
    case ir::Op::ring_attention:
    case ir::Op::ring_attention_backward: {
      const double kv = bytes(p, in[1]) + bytes(p, in[2]);
      return kv * (P - 1) * (ins.op == ir::Op::ring_attention ? 1.0 : 2.0);
    }
    default: return 0;
  }
}

double gemm_efficiency(const Hardware& hw, double m, double n, double k) {
  if (hw.gemm_knee <= 0) return hw.matmul_eff;
  const double g = std::cbrt(std::max(1.0, m * n * k));
  return hw.matmul_eff * g / (g + hw.gemm_knee);
}

namespace {

// One instruction's share of the step: what predict_step sums and what the stream
// simulation takes as its duration.
struct InstrCost {
  double flops = 0, compute_s = 0;
  double mem_bytes = 0;  // memory-bound bytes (timed at hbm_bw)
  double comm_s = 0;     // its collective, exchange or host transfer, unoverlapped
};

InstrCost instr_cost(const ir::Program& p, const ir::Instr& ins, const Hardware& hw, int world) {
  InstrCost c;
  const auto& in = ins.in;
  switch (ins.op) {
    case ir::Op::matmul: {
      const Shape& o = p.slots[ins.out[0]].type.shape;
      const auto& a = std::get<ir::MatmulAttrs>(ins.attrs);
      const Shape& sa = p.slots[in[0]].type.shape;
      const double k = double(a.trans_a ? sa[-2] : sa[-1]);
      const double f = 2.0 * double(o.numel()) * k, n = double(o[-1]);
      c.flops = f;
      c.compute_s = f / (hw.peak_flops * gemm_efficiency(hw, double(o.numel()) / n, n, k));
      if (in.size() == 3) c.mem_bytes += bytes(p, in[2]);  // the accumulated X, read once by the epilogue
      break;
    }
    case ir::Op::attention:
    case ir::Op::attention_backward:
    case ir::Op::ring_attention:
    case ir::Op::ring_attention_backward: {
      const Shape& q = p.slots[in[0]].type.shape;
      const bool ring = ins.op == ir::Op::ring_attention || ins.op == ir::Op::ring_attention_backward;
      const bool causal = ring ? std::get<ir::RingAttentionAttrs>(ins.attrs).causal
                               : std::get<ir::AttentionAttrs>(ins.attrs).causal;
      const double keys = double(q[1]) * (ring ? double(std::get<ir::RingAttentionAttrs>(ins.attrs).size) : 1.0);
      const double fwd = 4.0 * double(q[0]) * double(q[2]) * double(q[1]) * keys * double(q[3]) * (causal ? 0.5 : 1);
      const bool bwd = ins.op == ir::Op::attention_backward || ins.op == ir::Op::ring_attention_backward;
      c.flops = bwd ? 2.5 * fwd : fwd;
      c.compute_s = c.flops / (hw.peak_flops * hw.attention_eff);
      break;
    }
    case ir::Op::cross_entropy:
    case ir::Op::cross_entropy_backward: {
      const Shape& h = p.slots[in[0]].type.shape;
      const double n = double(h.numel() / h[-1]), d = double(h[-1]), v = double(p.slots[in[1]].type.shape[0]);
      c.flops = (ins.op == ir::Op::cross_entropy ? 2.0 : 6.0) * n * d * v;  // backward recomputes the logits
      // A softmax between GEMMs over vocabulary chunks, like flash attention: its efficiency
      // (on this CPU the fused kernel measures ~54% of peak, attention ~45%).
      c.compute_s = c.flops / (hw.peak_flops * hw.attention_eff);
      break;
    }
    case ir::Op::pack:  // parts written in place by their producers (lower.cc) move no bytes here
    case ir::Op::concat:
      for (int s : in)
        if (p.root(s) != p.root(ins.out[0])) c.mem_bytes += 2 * bytes(p, s);
      break;
    default:
      if (ir::is_collective(ins.op) || ir::is_transfer(ins.op)) break;
      for (int s : ins.in) c.mem_bytes += bytes(p, s);
      for (int s : ins.out) c.mem_bytes += bytes(p, s);
      break;
  }
  const double sent = comm_bytes(p, ins);
  if (sent > 0 && ir::is_transfer(ins.op)) {
    c.comm_s = sent / hw.host_bw;
  } else if (sent > 0) {
    const double bw = std::visit(
        [&](const auto& at) -> double {
          if constexpr (requires { at.group; at.size; })
            return bandwidth(hw, at.group, at.size, world);
          else
            return hw.intra_bw;
        },
        ins.attrs);
    c.comm_s = sent / bw;
  }
  return c;
}

// When the step ends if each instruction takes its cost, run as runtime/executor.cc runs it:
// the compute stream in list order, comm-stream instructions handed to a FIFO stream when the
// compute stream reaches them, and the k-th of those waited for before the instruction whose
// done_before is k (the executor's own count).
double simulate(const ir::Program& p, const std::vector<InstrCost>& cost, const Hardware& hw) {
  const int n = int(p.instrs.size());
  std::vector<int> done_before(size_t(n) + 1, 0);
  int handed = 0;
  for (int i = 0; i < n; ++i) {
    if (p.instrs[i].stream != ir::Stream::comm) continue;
    const int w = std::clamp(p.instrs[i].wait_before, i + 1, n);
    done_before[w] = std::max(done_before[w], ++handed);
  }
  done_before[n] = handed;
  double t = 0;          // the compute stream's clock
  double comm_free = 0;  // when the communication stream has finished what it was handed
  std::vector<double> finish;  // of each comm-stream instruction, in FIFO order
  for (int i = 0; i <= n; ++i) {
    if (done_before[i] > 0) t = std::max(t, finish[size_t(done_before[i] - 1)]);
    if (i == n) break;
    const ir::Instr& ins = p.instrs[i];
    const InstrCost& c = cost[i];
    const double work = c.compute_s + c.mem_bytes / hw.hbm_bw;
    const bool ring = ins.op == ir::Op::ring_attention || ins.op == ir::Op::ring_attention_backward;
    const double P = ring ? double(std::get<ir::RingAttentionAttrs>(ins.attrs).size) : 1.0;
    if (ins.stream == ir::Stream::comm) {
      comm_free = std::max(comm_free, t) + c.comm_s + work;
      finish.push_back(comm_free);
    } else if (ring && P > 1) {
      // P steps, each attending to one block (a) while the next block arrives (b). Its
      // exchanges share the link with the communication stream and NCCL orders them behind
      // what was handed to it, so the first transfer starts once that stream is free; the
      // local block need not wait for it. From then on each step takes the longer of the two.
      const double a = work / P, b = c.comm_s / (P - 1);
      t = std::max(t + a, std::max(t, comm_free) + b) + (P - 2) * std::max(a, b) + a;
    } else {
      t += work + c.comm_s;  // a collective on this stream runs inline, fully exposed
    }
  }
  return t;
}

}  // namespace

Hardware cpu_share(Hardware cpu, double cores) {
  const double share = cores / 2.0;  // the preset's measurements used 2 threads on 2 cores
  cpu.peak_flops *= share;
  cpu.hbm_bw *= share;
  return cpu;
}

StepCost predict_step(const ir::Program& p, const Hardware& hw, int world, bool overlap) {
  StepCost c;
  std::vector<InstrCost> cost;
  double mem_bytes = 0;
  for (const ir::Instr& ins : p.instrs) {
    cost.push_back(instr_cost(p, ins, hw, world));
    c.flops += cost.back().flops;
    c.compute_s += cost.back().compute_s;
    mem_bytes += cost.back().mem_bytes;
    c.comm_s += cost.back().comm_s;
  }
  c.memory_s = mem_bytes / hw.hbm_bw;
  // Without overlap every collective runs inline; counted whole even where the program was
  // scheduled for overlap (and for ring attention, whose exchange overlaps its blocks anyway).
  // Where communication takes compute's cores (the CPU), what it hides it adds to compute:
  // counted whole too.
  c.exposed_comm_s = overlap && hw.concurrent_comm
                         ? std::max(0.0, simulate(p, cost, hw) - (c.compute_s + c.memory_s))
                         : c.comm_s;
  return c;
}

double optimizer_step_s(int64_t updated, int64_t gathered_bytes, const Hardware& hw, int world) {
  const double adamw = 28.0 * double(updated) / hw.hbm_bw;
  const double P = double(world);
  const double gather = world > 1 ? double(gathered_bytes) * (P - 1) / P / bandwidth(hw, ir::MeshGroup::world, world, world)
                                  : 0.0;
  return adamw + gather;
}

}  // namespace autosp::sp
