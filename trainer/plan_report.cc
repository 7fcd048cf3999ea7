#include "trainer/plan_report.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "kernels/cuda/norm_scratch.h"
#include "models/model.h"
#include "runtime/params.h"
#include "runtime/ring_attention.h"
#include "sp_compiler/lower.h"
#include "trainer/progress.h"

namespace autosp::trainer {

namespace {
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

}  // namespace

MemoryPlan memory_plan(const Compiled& c) {
  MemoryPlan m;
  m.num_params = models::num_params(c.forward);
  m.params = m.grads = 4 * m.num_params;  // fp32
  m.optimizer = 2 * m.params;             // AdamW exp_avg and exp_avg_sq
  if (c.buckets.stage > 0) {  // ZeRO: what runtime/zero_params.cc allocates
    m.params = m.grads = m.optimizer = 0;
    for (const ir::Bucket& b : c.buckets.buckets) {
      m.params += c.buckets.param_bytes(b);
      m.grads += c.buckets.grad_bytes(b);
      m.optimizer += c.buckets.optimizer_bytes(b);
    }
    m.buffers = c.buckets.send_bytes();
  }
  m.train_arena = c.train.arena_bytes;
  m.eval_arena = c.eval.arena_bytes;
  m.host = c.train.host_bytes;
  m.workspace = std::max(kernel_workspace_bytes(c.train, c.device), kernel_workspace_bytes(c.eval, c.device));
  return m;
}

namespace {

// A ring attention op with segment ids (after q, k, v, idx; the backward's after its seven).
bool ring_has_segments(const ir::Instr& ins) {
  return ins.in.size() > (ins.op == ir::Op::ring_attention ? 4u : 7u);
}

// runtime::ring_buffer_bytes for one ring op of the program.
int64_t ring_op_buffer_bytes(const ir::Program& p, const ir::Instr& ins, bool cuda) {
  const Shape& q = p.slots[ins.in[0]].type.shape;  // [B, T, H, D]
  runtime::RingAttentionArgs a;
  a.B = q[0], a.T = q[1], a.H = q[2], a.Hkv = p.slots[ins.in[1]].type.shape[2], a.D = q[3];
  static const int32_t any_segment = 0;  // only whether there are segment ids matters here
  if (ring_has_segments(ins)) a.seg = &any_segment;
  return runtime::ring_buffer_bytes(a, cuda);
}

}  // namespace

int64_t kernel_workspace_bytes(const ir::Program& p, const std::string& device) {
  const bool cuda = device == "cuda";
  auto shape = [&](int slot) -> const Shape& { return p.slots[slot].type.shape; };
  auto rows = [&](int slot) { return shape(slot).numel() / shape(slot)[-1]; };
  auto align = [](int64_t b) { return (b + 255) / 256 * 256; };
  // CPU: one op's scratch at a time (its kernels allocate per call). CUDA: three separate
  // allocations that all stay: the kernels' shared workspace, the attention contexts'
  // scratch, and ring attention's buffers; each is the largest any op needs.
  int64_t most = 0, attention = 0, ring_buffers = 0, documents = 0;
  // What cuDNN takes as packed documents (kernels/cuda/attention_cudnn.cc): an attention with
  // segments and no token index, and a ring attention's blocks when it has segments
  // (runtime/cuda/ring_attention_cuda.cc).
  auto ring = [](const ir::Instr& ins) {
    return ins.op == ir::Op::ring_attention || ins.op == ir::Op::ring_attention_backward;
  };
  auto packed = [&](const ir::Instr& ins) {
    if (ring(ins)) return ring_has_segments(ins);
    if (ins.op != ir::Op::attention && ins.op != ir::Op::attention_backward) return false;
    return !std::get<ir::AttentionAttrs>(ins.attrs).indexed && ins.in.size() == (ins.op == ir::Op::attention ? 4u : 7u);
  };
  // CUDA: each segment tensor's document starts, B·T + 1 int32, stay; per attention context
  // (the backend's, and ring attention's own).
  std::vector<std::pair<bool, int>> segments;
  for (const ir::Instr& ins : p.instrs) {
    int64_t b = 0;
    if (cuda && packed(ins)) {
      const std::pair<bool, int> seg{ring(ins), p.root(ins.in.back())};
      if (std::find(segments.begin(), segments.end(), seg) == segments.end()) {
        segments.push_back(seg);
        // and the ragged tables, carved from the attention scratch past its estimate: 32 bytes a
        // document, 1 MiB for 32k of them
        documents += align(4 * (shape(ins.in.back()).numel() + 1)) + (int64_t(1) << 20);
      }
    }
    switch (ins.op) {
      case ir::Op::cross_entropy:
      case ir::Op::cross_entropy_backward:
        if (cuda) {
          const int64_t n = rows(ins.in[0]), d = shape(ins.in[0])[-1], v = shape(ins.in[1])[0];
          const int64_t r = std::min<int64_t>(4096, n), ch = std::min(std::get<ir::CrossEntropyAttrs>(ins.attrs).chunk, v);
          const int64_t blocks = (n + r - 1) / r;
          b = align(r * ch * 4) + align(r * ch * 2) + align(r * d * 4) + 3 * align(r * 4) + align(16 * blocks) +
              (blocks > 1 ? align(v * d * 4) : 0);  // the fp32 dw accumulator of several row blocks
        }
        break;
      case ir::Op::attention_backward:
      case ir::Op::ring_attention_backward: {
        const Shape& q = shape(ins.in[0]);  // [B, T, H, D]
        // fp32 values per query row and head: CUDA's dQ accumulator and two statistics, and with
        // GQA over packed documents cuDNN's per-query-head dK and dV as well; the CPU's statistics.
        const bool gqa_documents = packed(ins) && shape(ins.in[1])[2] != q[2];
        const int64_t per_row = cuda ? (gqa_documents ? 3 : 1) * q[3] + 2 : 2;
        const int64_t scratch = q[0] * q[2] * q[1] * 4 * per_row;
        const int64_t buffers = ins.op == ir::Op::ring_attention_backward ? ring_op_buffer_bytes(p, ins, cuda) : 0;
        if (cuda) {
          attention = std::max(attention, scratch);
          ring_buffers = std::max(ring_buffers, buffers);
        } else {
          b = scratch + buffers;
        }
        break;
      }
      case ir::Op::ring_attention:
        if (cuda)
          ring_buffers = std::max(ring_buffers, ring_op_buffer_bytes(p, ins, cuda));
        else
          b = ring_op_buffer_bytes(p, ins, cuda);
        break;
      case ir::Op::rms_norm_backward:
      case ir::Op::layer_norm_backward:
        if (cuda)
          b = int64_t(kernels::cuda::norm_backward_scratch_bytes(rows(ins.in[0]), shape(ins.in[0])[-1],
                                                                  ins.op == ir::Op::layer_norm_backward));
        break;
      case ir::Op::embedding_backward:  // counting sort of the ids: 3·N + V + 1 int32, and CUB's temp (~N·8)
        b = cuda ? 4 * (3 * shape(ins.in[0]).numel() + shape(ins.out[0])[0] + 1) + 8 * shape(ins.in[0]).numel() : 0;
        break;
      default: break;
    }
    if (!cuda) {  // f32 copies of a bf16 op's operands
      int64_t copies = 0;
      for (const auto* group : {&ins.in, &ins.out})
        for (int s : *group)
          if (p.slots[s].type.dtype == DType::bf16) copies += 4 * shape(s).numel();
      if (ins.op != ir::Op::cast && ins.op != ir::Op::reshape && ins.op != ir::Op::permute && ins.op != ir::Op::split &&
          ins.op != ir::Op::concat)
        b += copies;
    }
    most = std::max(most, b);
  }
  if (!cuda) return most;
  return most + attention + ring_buffers + documents + (int64_t(32) << 20);  // and the cuBLASLt workspace (GemmContext)
}

// Bytes by collective kind, as the cost model counts them (sp::comm_bytes).
std::vector<CommVolume> communication_per_step(const ir::Program& p) {
  std::map<std::string, CommVolume> by_kind;
  for (const ir::Instr& ins : p.instrs) {
    const double bytes = sp::comm_bytes(p, ins);
    if (bytes <= 0) continue;
    const std::string kind = std::string(ir::op_name(ins.op)) + " (" + group_of(ins.attrs) + ")";
    CommVolume& v = by_kind[kind];
    v.kind = kind;
    v.calls += 1;
    v.bytes += int64_t(bytes);
  }
  std::vector<CommVolume> out;
  for (auto& [k, v] : by_kind) out.push_back(v);
  return out;
}

std::vector<CommVolume> step_communication(const Compiled& c) {
  std::vector<CommVolume> comm = communication_per_step(c.train);
  if (c.buckets.stage > 0 && c.buckets.stage < 3 && c.mesh.world() > 1) {
    // The optimizer's gather of the updated buckets runs after the program (runtime/zero_params.cc).
    CommVolume after{"all_gather (world, after the update)", 0, 0};
    const int P = c.mesh.world();
    for (const ir::Bucket& b : c.buckets.buckets) {
      after.calls += 1;
      after.bytes += c.buckets.update_gather_bytes(b) / P * (P - 1);
    }
    comm.push_back(after);
  }
  return comm;
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
  const std::string micro = o.train.grad_accum_steps > 1
                                ? " x " + std::to_string(o.train.grad_accum_steps) + " micro-batches"
                                : std::string();
  add("plan: %s, %lld layers, %s parameters; seq_len %lld x batch %lld%s; world %d = dp %d x sp %d; zero %lld\n",
      o.model.arch.c_str(), (long long)o.model.n_layers, human_count(double(m.num_params)).c_str(),
      (long long)o.train.seq_len, (long long)o.train.batch_size, micro.c_str(), c.mesh.world(), c.mesh.dp, c.mesh.sp,
      (long long)o.parallel.zero_stage);
  if (c.mesh.sp > 1) {
    add("sequence: %lld tokens%s, %lld per rank, layout %s\n", (long long)L.seq_len,
        L.padded != L.seq_len ? (" padded to " + std::to_string(L.padded)).c_str() : "", (long long)L.local(),
        L.zigzag ? (L.inner > 1 ? ("zigzag (" + std::to_string(L.sp / L.inner) + " ring groups of " +
                                   std::to_string(L.inner) + " Ulysses ranks)")
                                      .c_str()
                                : "zigzag")
                 : "contiguous");
    // Consecutive attention ops with the same decision share a line.
    const auto& att = c.plan.attention;
    for (size_t i = 0; i < att.size();) {
      size_t j = i + 1;
      while (j < att.size() && att[j].strategy == att[i].strategy && att[j].inner == att[i].inner &&
             att[j].kv_repeat == att[i].kv_repeat && att[j].reason == att[i].reason)
        ++j;
      const std::string ops = j - i > 1 ? std::to_string(i) + "-" + std::to_string(j - 1) : std::to_string(i);
      add("  attention %s: %s (ulysses %d x ring %d%s) - %s\n", ops.c_str(), sp::strategy_name(att[i].strategy),
          att[i].inner, att[i].outer, att[i].kv_repeat > 1 ? (", kv heads x" + std::to_string(att[i].kv_repeat)).c_str() : "",
          att[i].reason.c_str());
      i = j;
    }
  }
  add("recompute: %s%s - %s\n", sp::recompute_name(c.recompute),
      c.mlp_chunks > 1 ? (", MLP in " + std::to_string(c.mlp_chunks) + " sequence chunks").c_str() : "",
      c.recompute_reason.c_str());
  const auto comm = step_communication(c);
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
  bool bf16_whole = false;
  for (const ir::Bucket& b : c.buckets.buckets) bf16_whole = bf16_whole || c.buckets.separate_master(b);
  add("  parameters   %12s  (%s%s)\n", human_bytes(double(m.params)).c_str(),
      bf16_whole ? "matrices whole in bf16 and their fp32 master shard, the rest fp32" : "fp32",
      c.buckets.stage == 3 ? sharded : "");
  add("  gradients    %12s  (fp32%s)\n", human_bytes(double(m.grads)).c_str(), c.buckets.stage >= 2 ? sharded : "");
  add("  optimizer    %12s  (AdamW exp_avg + exp_avg_sq%s)\n", human_bytes(double(m.optimizer)).c_str(), sharded);
  if (m.buffers > 0)
    add("  buffers      %12s  (the send buffer of the gather after the update: the largest shard)\n",
        human_bytes(double(m.buffers)).c_str());
  add("  activations  %12s  (train-step arena, liveness-planned; eval %s)\n",
      human_bytes(double(m.train_arena)).c_str(), human_bytes(double(m.eval_arena)).c_str());
  add("  workspace    %12s  (%s kernels' scratch beside the arena)\n", human_bytes(double(m.workspace)).c_str(),
      c.device.c_str());
  add("  total        %12s\n", human_bytes(double(m.total())).c_str());
  if (m.host > 0)
    add("  host         %12s  (offloaded activations, pinned host memory; not in the total)\n",
        human_bytes(double(m.host)).c_str());
  const ArenaPeakReport peak = arena_peak_report(c.train);
  if (peak.at >= 0) {
    add("activation peak: %s alive at instruction %d of %d, %s; the largest groups, by the op that made them:\n",
        human_bytes(double(peak.bytes)).c_str(), peak.at, peak.instructions, peak.label.c_str());
    for (size_t i = 0; i < peak.groups.size() && i < 6; ++i) {
      const PeakGroup& g = peak.groups[i];
      add("  %10s  %lld x %s  %s\n", human_bytes(double(g.count * g.bytes_each)).c_str(), (long long)g.count,
          human_bytes(double(g.bytes_each)).c_str(), g.op.c_str());
    }
  }
  return s;
}

ArenaPeakReport arena_peak_report(const ir::Program& p) {
  ArenaPeakReport r;
  const sp::Lifetimes l = sp::lifetimes(p);
  const sp::ArenaPeak peak = sp::arena_peak(p, l);
  r.at = peak.at;
  r.bytes = peak.bytes;
  r.instructions = int(p.instrs.size());
  if (peak.at < 0) return r;
  r.label = p.instrs[size_t(peak.at)].label;
  std::map<std::pair<std::string, int64_t>, int64_t> count;  // (op, bytes) -> tensors
  for (int s = 0; s < int(p.slots.size()); ++s) {
    if (p.slots[s].kind != ir::Slot::Kind::arena || l.first[s] < 0 || l.first[s] > peak.at || l.last[s] < peak.at)
      continue;
    const ir::TensorType& t = p.slots[s].type;
    ++count[{std::string(ir::op_name(p.instrs[size_t(l.first[s])].op)), t.shape.numel() * int64_t(dtype_size(t.dtype))}];
  }
  for (const auto& [key, n] : count) r.groups.push_back({key.first, n, key.second});
  std::stable_sort(r.groups.begin(), r.groups.end(), [](const PeakGroup& a, const PeakGroup& b) {
    return a.count * a.bytes_each > b.count * b.bytes_each;
  });
  return r;
}

double model_flops_per_token(const Options& o, const Compiled& c) {
  double dense = 0;
  for (const runtime::ParamSpec& p : runtime::param_specs(c.forward))
    if (p.name != "model.embed_tokens.weight" && p.name != "transformer.wte.weight" &&
        p.name != "transformer.wpe.weight")
      dense += double(p.shape.numel());
  if (o.model.tie_embeddings) dense += double(o.model.vocab_size * o.model.d_model);  // the head reads it
  return 6.0 * dense + 6.0 * double(o.model.n_layers) * double(o.model.d_model) * double(o.train.seq_len);
}

StatusOr<Prediction> predict(const Options& o, const Compiled& c) {
  Prediction r;
  const int world = c.mesh.world();
  // An optimizer step runs the training program once per micro-batch.
  const double micro = double(o.train.grad_accum_steps);
  r.tokens_per_step = micro * double(c.mesh.dp) * double(o.train.batch_size) * double(o.train.seq_len);
  r.flops_per_token = model_flops_per_token(o, c);
  // The optimizer step: every parameter on one rank without ZeRO, else this rank's shards,
  // and below stage 3 the gather of the whole updated buckets.
  int64_t updated = models::num_params(c.forward), gathered = 0;
  if (c.buckets.stage > 0) {
    updated = 0;
    for (const ir::Bucket& b : c.buckets.buckets) {
      updated += c.buckets.shard_numel(b);
      gathered += c.buckets.update_gather_bytes(b);
    }
  }
  // Every program here was compiled for c.hardware.
  auto add = [&](const std::string& label, sp::StepCost k) {
    for (double* t : {&k.compute_s, &k.memory_s, &k.comm_s, &k.exposed_comm_s}) *t *= micro;
    k.optimizer_s = sp::optimizer_step_s(updated, gathered, c.hardware, world);
    r.steps.push_back({label, k, r.tokens_per_step / k.step_s(),
                       r.tokens_per_step * r.flops_per_token / (k.step_s() * c.hardware.peak_flops * world)});
  };
  add("as planned (" + o.parallel.sp_strategy + ")", sp::predict_step(c.train, c.hardware, world, o.parallel.overlap));
  if (c.mesh.sp <= 1) return r;
  std::vector<Compiled::Forced> forced = c.forced;  // compiled already when sp_strategy is auto
  if (forced.empty())
    for (const char* strategy : kForcedStrategies) {
      ASSIGN_OR_RETURN(ForcedCompile f, compile_forced(o, world, c.hardware.name, strategy));
      forced.push_back(std::move(f.forced));
    }
  for (const Compiled::Forced& f : forced) add(f.got == f.strategy ? f.strategy : f.strategy + " -> " + f.got, f.cost);
  return r;
}

std::string format_prediction(const Options& o, const Compiled& c, const Prediction& r) {
  std::string s;
  char line[512];
  const bool tera = c.hardware.peak_flops >= 1e12;  // GPUs; the CPU preset is in GFLOP/s
  std::snprintf(line, sizeof line, "prediction on %s (%d ranks, %.0f %s peak per rank; MFU counts %.3g FLOP/token):\n",
                c.hardware.name.c_str(), c.mesh.world(), c.hardware.peak_flops / (tera ? 1e12 : 1e9),
                tera ? "TFLOP/s" : "GFLOP/s", r.flops_per_token);
  s += line;
  if (o.data.documents && o.train.device == "cuda")
    s += "  note: with data.documents, attention does only each document's own square (cuDNN's ragged layout,\n"
         "        ring attention's blocks included), while the predictions count the whole causal square: an\n"
         "        upper bound\n";
  for (const StepPrediction& p : r.steps) {
    const sp::StepCost& k = p.cost;
    std::snprintf(line, sizeof line,
                  "  %-22s step %9.3f s  %10s tok/s  MFU %5.1f%%  (compute %.3f s, memory %.3f s, "
                  "communication %.3f s of which exposed %.3f s, optimizer %.3f s)\n",
                  p.label.c_str(), k.step_s(), human_count(p.tokens_per_s).c_str(), 100 * p.mfu, k.compute_s,
                  k.memory_s, k.comm_s, k.exposed_comm_s, k.optimizer_s);
    s += line;
  }
  return s;
}

nlohmann::json plan_json(const Options& o, const Compiled& c, const Prediction& r) {
  using nlohmann::json;
  const MemoryPlan m = memory_plan(c);
  json j;
  j["model"] = {{"arch", o.model.arch}, {"layers", o.model.n_layers}, {"parameters", m.num_params}};
  j["step"] = {{"seq_len", o.train.seq_len},   {"batch", o.train.batch_size}, {"micro_batches", o.train.grad_accum_steps},
               {"world", c.mesh.world()},       {"dp", c.mesh.dp},             {"sp", c.mesh.sp},
               {"zero_stage", c.buckets.stage}, {"dtype", o.train.dtype},      {"device", c.device}};
  json attention = json::array();
  for (const sp::AttentionDecision& d : c.plan.attention)
    attention.push_back({{"strategy", sp::strategy_name(d.strategy)}, {"ulysses", d.inner}, {"ring", d.outer},
                         {"kv_repeat", d.kv_repeat}, {"reason", d.reason}});
  j["attention"] = attention;
  j["recompute"] = {{"policy", sp::recompute_name(c.recompute)}, {"mlp_chunks", c.mlp_chunks},
                    {"offload", c.offload}, {"reason", c.recompute_reason}};
  json comm = json::array();
  for (const CommVolume& v : step_communication(c)) comm.push_back({{"kind", v.kind}, {"calls", v.calls}, {"bytes", v.bytes}});
  j["communication"] = comm;
  j["memory_bytes"] = {{"parameters", m.params},      {"gradients", m.grads},         {"optimizer", m.optimizer},
                       {"buffers", m.buffers},        {"activations", m.train_arena}, {"eval_activations", m.eval_arena},
                       {"workspace", m.workspace},    {"total", m.total()},           {"host", m.host}};
  const ArenaPeakReport peak = arena_peak_report(c.train);
  json groups = json::array();
  for (const PeakGroup& g : peak.groups) groups.push_back({{"op", g.op}, {"count", g.count}, {"bytes_each", g.bytes_each}});
  j["activation_peak"] = {{"instruction", peak.at}, {"instructions", peak.instructions}, {"label", peak.label},
                          {"bytes", peak.bytes}, {"groups", groups}};
  json steps = json::array();
  for (const StepPrediction& p : r.steps)
    steps.push_back({{"label", p.label},
                     {"step_s", p.cost.step_s()},
                     {"tokens_per_s", p.tokens_per_s},
                     {"mfu", p.mfu},
                     {"compute_s", p.cost.compute_s},
                     {"memory_s", p.cost.memory_s},
                     {"communication_s", p.cost.comm_s},
                     {"exposed_communication_s", p.cost.exposed_comm_s},
                     {"optimizer_s", p.cost.optimizer_s}});
  j["prediction"] = {{"hardware", c.hardware.name},
                     {"peak_flops_per_rank", c.hardware.peak_flops},
                     {"flops_per_token", r.flops_per_token},
                     {"tokens_per_step", r.tokens_per_step},
                     {"steps", steps}};
  return j;
}

StatusOr<std::string> format_alternatives(const Options& o, const Compiled& c, const std::string& hardware) {
  if (o.train.memory_gib <= 0 || fits_budgets(o, c)) return std::string();
  const int world = c.mesh.world();
  std::string s = "does not fit train.memory_gib = " + human_bytes(o.train.memory_gib * double(1ll << 30)) + " (" +
                  human_bytes(double(memory_plan(c).total())) + " planned per rank); planned again with one change:\n";
  auto try_one = [&](const std::string& what, Options alt, int alt_world) -> Status {
    auto ac = compile(alt, alt_world, "", hardware);
    if (!ac.ok()) {
      s += "  " + what + ": " + ac.status().message() + "\n";
      return Status::Ok();
    }
    const MemoryPlan m = memory_plan(ac.value());
    s += "  " + what + ": " + human_bytes(double(m.total())) + " per rank" +
         (m.host > 0 ? " + " + human_bytes(double(m.host)) + " host" : "") +
         (fits_budgets(alt, ac.value()) ? " - fits" : " - still over") + "\n";
    return Status::Ok();
  };
  if (c.buckets.stage < 3 && world > 1) {
    Options alt = o;
    alt.parallel.zero_stage = 3;
    RETURN_IF_ERROR(try_one("--set parallel.zero_stage=3", alt, world));
  }
  if (o.train.offload != "on") {
    Options alt = o;
    alt.train.offload = "on";
    RETURN_IF_ERROR(try_one("--set train.offload=on", alt, world));
  }
  {
    Options alt = o;
    alt.parallel.sp = o.parallel.sp * 2;
    RETURN_IF_ERROR(try_one("--set parallel.sp=" + std::to_string(alt.parallel.sp) + " on " +
                                std::to_string(2 * world) + " ranks",
                            alt, 2 * world));
  }
  return s;
}

StatusOr<int64_t> longest_seq_len(const Options& opts, int world_size, int64_t budget_bytes,
                                  const std::string& hardware) {
  const int64_t step = 2 * std::max<int64_t>(1, opts.parallel.sp);
  Options o = opts;
  o.train.memory_gib = double(budget_bytes) / double(1ll << 30);  // "auto" recompute aims at the same budget
  auto fits = [&](int64_t len) -> StatusOr<bool> {
    o.train.seq_len = len;
    o.model.max_seq_len = std::max(opts.model.max_seq_len, len);
    return some_plan_fits(o, world_size, hardware);
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
