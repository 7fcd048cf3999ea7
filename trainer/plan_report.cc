#include "trainer/plan_report.h"

#include <cstdio>
#include <map>

#include "runtime/params.h"
#include "trainer/progress.h"

namespace autosp::trainer {

namespace {
int64_t nbytes(const ir::Program& p, int slot) {
  const ir::TensorType& t = p.slots[slot].type;
  return t.shape.numel() * int64_t(dtype_size(t.dtype));
}

std::string group_of(const ir::Attrs& a) {
  return std::visit(
      [](const auto& s) -> std::string {
        if constexpr (requires { s.group; })
          return std::string(ir::group_name(s.group));
        else
          return "";
      },
      a);
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

MemoryPlan memory_plan(const Compiled& c) {
  MemoryPlan m;
  for (const runtime::ParamSpec& p : runtime::param_specs(c.forward)) m.num_params += p.shape.numel();
  m.params = m.grads = 4 * m.num_params;  // fp32
  m.optimizer = 2 * m.params;             // AdamW exp_avg and exp_avg_sq
  if (c.buckets.stage > 0) {  // ZeRO: what runtime/zero_params.cc allocates
    m.params = m.grads = m.optimizer = 0;
    for (const ir::Bucket& b : c.buckets.buckets) {
      const int64_t shard = c.buckets.shard_numel(b);
      m.params += 4 * (c.buckets.stage < 3 ? b.padded : shard);
      m.grads += 4 * (c.buckets.stage == 1 ? b.padded : shard);
      m.optimizer += 8 * shard;
    }
  }
  m.train_arena = c.train.arena_bytes;
  m.eval_arena = c.eval.arena_bytes;
  return m;
}

// Bytes one rank sends, by the algorithm each collective uses: all_to_all keeps 1/P of its
// input; all_gather sends its piece to P-1 peers; reduce_scatter and all_reduce are counted
// as ring algorithms ((P-1)/P of the data, twice for all_reduce); a ring attention forward
// sends its K/V block (with token index and segments) P-1 times, the backward also returns
// the dK/dV accumulators home (P hops).
std::vector<CommVolume> communication_per_step(const ir::Program& p) {
  std::map<std::string, CommVolume> by_kind;
  for (const ir::Instr& ins : p.instrs) {
    const int64_t P = group_size(ins.attrs);
    int64_t bytes = 0;
    switch (ins.op) {
      case ir::Op::all_to_all: bytes = nbytes(p, ins.in[0]) * (P - 1) / P; break;
      case ir::Op::all_gather: bytes = nbytes(p, ins.in[0]) * (P - 1); break;
      case ir::Op::reduce_scatter: bytes = nbytes(p, ins.in[0]) * (P - 1) / P; break;
      case ir::Op::all_reduce: bytes = 2 * nbytes(p, ins.in[0]) * (P - 1) / P; break;
      case ir::Op::send_recv: bytes = nbytes(p, ins.in[0]); break;
      case ir::Op::ring_attention:
      case ir::Op::ring_attention_backward: {
        int64_t block = nbytes(p, ins.in[1]) + nbytes(p, ins.in[2]);
        for (size_t k = ins.op == ir::Op::ring_attention ? 3 : 6; k < ins.in.size(); ++k) block += nbytes(p, ins.in[k]);
        bytes = block * (P - 1);
        if (ins.op == ir::Op::ring_attention_backward) bytes += (nbytes(p, ins.in[1]) + nbytes(p, ins.in[2])) * P;
        break;
      }
      default: continue;
    }
    const std::string kind = std::string(ir::op_name(ins.op)) + " (" + group_of(ins.attrs) + ")";
    CommVolume& v = by_kind[kind];
    v.kind = kind;
    v.calls += 1;
    v.bytes += bytes;
  }
  std::vector<CommVolume> out;
  for (auto& [k, v] : by_kind) out.push_back(v);
  return out;
}

std::string format_plan(const Options& o, const Compiled& c) {
  std::string s;
  char line[512];
  auto add = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof line, fmt, args...);
    s += line;
  };
  const MemoryPlan m = memory_plan(c);
  const sp::SeqLayout& L = c.plan.layout;
  add("plan: %s, %lld layers, %s parameters; seq_len %lld x batch %lld; world %d = dp %d x sp %d; zero %lld\n",
      o.model.arch.c_str(), (long long)o.model.n_layers, human_count(double(m.num_params)).c_str(),
      (long long)o.train.seq_len, (long long)o.train.batch_size, c.mesh.world(), c.mesh.dp, c.mesh.sp,
      (long long)o.parallel.zero_stage);
  if (c.mesh.sp > 1) {
    add("sequence: %lld tokens%s, %lld per rank, layout %s\n", (long long)L.seq_len,
        L.padded != L.seq_len ? (" padded to " + std::to_string(L.padded)).c_str() : "", (long long)L.local(),
        L.zigzag ? (L.inner > 1 ? ("zigzag (" + std::to_string(L.sp / L.inner) + " ring groups of " +
                                   std::to_string(L.inner) + " Ulysses ranks)")
                                      .c_str()
                                : "zigzag")
                 : "contiguous");
    for (size_t i = 0; i < c.plan.attention.size(); ++i) {
      const sp::AttentionDecision& d = c.plan.attention[i];
      add("  attention %zu: %s (ulysses %d x ring %d%s) - %s\n", i, sp::strategy_name(d.strategy), d.inner, d.outer,
          d.kv_repeat > 1 ? (", kv heads x" + std::to_string(d.kv_repeat)).c_str() : "", d.reason.c_str());
    }
  }
  add("recompute: %s - %s\n", sp::recompute_name(c.recompute), c.recompute_reason.c_str());
  const auto comm = communication_per_step(c.train);
  if (!comm.empty()) {
    add("communication per training step, per rank:\n");
    int64_t total = 0;
    for (const CommVolume& v : comm) {
      add("  %-34s %5lld calls %12s\n", v.kind.c_str(), (long long)v.calls, human_bytes(double(v.bytes)).c_str());
      total += v.bytes;
    }
    add("  %-34s %17s\n", "total", human_bytes(double(total)).c_str());
  }
  add("memory per rank:\n");
  const char* sharded = c.buckets.stage > 0 ? ", this rank's shard" : "";
  add("  parameters   %12s  (fp32%s)\n", human_bytes(double(m.params)).c_str(), c.buckets.stage == 3 ? sharded : "");
  add("  gradients    %12s  (fp32%s)\n", human_bytes(double(m.grads)).c_str(), c.buckets.stage >= 2 ? sharded : "");
  add("  optimizer    %12s  (AdamW exp_avg + exp_avg_sq%s)\n", human_bytes(double(m.optimizer)).c_str(), sharded);
  add("  activations  %12s  (train-step arena, liveness-planned; eval %s)\n",
      human_bytes(double(m.train_arena)).c_str(), human_bytes(double(m.eval_arena)).c_str());
  add("  total        %12s\n", human_bytes(double(m.total())).c_str());
  return s;
}

StatusOr<int64_t> longest_seq_len(const Options& opts, int world_size, int64_t budget_bytes) {
  const int64_t step = 2 * std::max<int64_t>(1, opts.parallel.sp);
  Options o = opts;
  o.train.memory_gib = double(budget_bytes) / double(1ll << 30);  // "auto" recompute aims at the same budget
  auto fits = [&](int64_t len) -> StatusOr<bool> {
    o.train.seq_len = len;
    o.model.max_seq_len = std::max(opts.model.max_seq_len, len);
    ASSIGN_OR_RETURN(Compiled c, compile(o, world_size));
    return memory_plan(c).total() <= budget_bytes;
  };
  // Memory grows with the length: double until it no longer fits, then bisect.
  int64_t lo = 0, hi = step;
  for (;;) {
    ASSIGN_OR_RETURN(bool ok, fits(hi));
    if (!ok) break;
    lo = hi;
    if (hi > (int64_t(1) << 26)) return hi;  // 64M tokens: stop searching
    hi *= 2;
  }
  while (hi - lo > step) {
    const int64_t mid = (lo + hi) / 2 / step * step;
    ASSIGN_OR_RETURN(bool ok, fits(mid));
    (ok ? lo : hi) = mid;
  }
  return lo;
}

}  // namespace autosp::trainer
