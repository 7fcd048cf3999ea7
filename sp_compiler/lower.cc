#include "sp_compiler/lower.h"

#include <algorithm>
#include <map>

#include "core/log.h"

namespace autosp::sp {

namespace {

using ir::Program;
using ir::Slot;
using ir::ValueId;

constexpr int64_t kAlign = 64;  // every arena tensor starts on a cache line
int64_t aligned_bytes(const ir::TensorType& t) {
  int64_t b = t.shape.numel() * int64_t(dtype_size(t.dtype));
  return (b + kAlign - 1) / kAlign * kAlign;
}

struct Interval {
  int slot;
  int begin, end;  // instruction indices, inclusive
  int64_t bytes;
};

// Greedy by size: the largest tensors first (ties: the earlier, then the lower slot), each at
// the lowest offset free of every tensor already placed whose lifetime overlaps its own. The
// few activation-sized tensors then stack without the holes that first fit in instruction
// order leaves between them, which moved with any change of the program (on the Llama plans
// this reaches the peak of live bytes, the lower bound). Returns the arena size.
int64_t assign_offsets(std::vector<Interval>& iv, std::vector<Slot>& slots) {
  std::sort(iv.begin(), iv.end(), [](const Interval& a, const Interval& b) {
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    return a.begin != b.begin ? a.begin < b.begin : a.slot < b.slot;
  });
  struct Placed { int64_t offset, bytes; int begin, end; };
  std::vector<Placed> placed;  // by offset: the tensors overlapping an interval come in offset order
  int64_t peak = 0;
  for (const Interval& i : iv) {
    int64_t off = 0;
    for (const Placed& q : placed) {
      if (q.begin > i.end || i.begin > q.end) continue;  // not alive at the same time
      if (off + i.bytes <= q.offset) break;
      off = std::max(off, q.offset + q.bytes);
    }
    slots[i.slot].offset = off;
    const auto at = std::upper_bound(placed.begin(), placed.end(), off,
                                     [](int64_t o, const Placed& q) { return o < q.offset; });
    placed.insert(at, {off, i.bytes, i.begin, i.end});
    peak = std::max(peak, off + i.bytes);
  }
  return peak;
}

// The alias slots viewing each root slot, kept current as the in-place steps below turn roots
// into views of other roots (views always point at a root).
class Views {
 public:
  explicit Views(const Program& p) : of_(p.slots.size()) {
    for (int s = 0; s < int(p.slots.size()); ++s)
      if (p.slots[s].kind == Slot::Kind::alias) of_[size_t(p.slots[s].alias_of)].push_back(s);
  }
  // Root `from` becomes a view of root `to` at byte `offset`, and so do its views.
  void retarget(Program& p, int from, int to, int64_t offset) {
    for (int v : of_[size_t(from)]) {
      p.slots[v].alias_of = to;
      p.slots[v].alias_offset += offset;
    }
    p.slots[from].kind = Slot::Kind::alias;
    p.slots[from].alias_of = to;
    p.slots[from].alias_offset = offset;
    std::vector<int>& into = of_[size_t(to)];
    into.insert(into.end(), of_[size_t(from)].begin(), of_[size_t(from)].end());
    into.push_back(from);
    of_[size_t(from)].clear();
  }

 private:
  std::vector<std::vector<int>> of_;
};

// A fused matmul (fuse_accumulate) whose accumulated operand X is an arena tensor that dies
// there writes over X (BLAS C += A·B in place), as the add it replaced could not: the
// residual stream and a gradient sum are updated where they lie instead of needing a second
// buffer while the GEMM's inputs are still alive. X must not also be A or B, and no
// collective may still be reading it (last use counts up to each collective's wait).
void accumulate_in_place(Program& p) {
  std::vector<int> last = lifetimes(p).last;  // extended below as accumulations chain
  Views views(p);
  for (int i = 0; i < int(p.instrs.size()); ++i) {
    const ir::Instr& ins = p.instrs[i];
    if (ins.op != ir::Op::matmul || ins.in.size() != 3) continue;
    const int x = p.root(ins.in[2]), out = ins.out[0];
    // A whole arena tensor (or a view of all of one: X accumulated in place before, in a chain).
    const bool whole = p.slots[x].kind == Slot::Kind::arena && p.slots[ins.in[2]].alias_offset == 0 &&
                       p.slots[x].type == p.slots[ins.in[2]].type;
    if (!whole || p.slots[out].kind != Slot::Kind::arena || last[x] != i || p.root(ins.in[0]) == x ||
        p.root(ins.in[1]) == x)
      continue;
    views.retarget(p, out, x, 0);  // the result, and its views, now view X
    last[x] = std::max(last[x], last[out]);
  }
}

// A split or concat along `axis` of `shape` whose parts are consecutive byte ranges of the
// whole (every axis before `axis` has size 1, as the sequence axis of one row: chunk_mlp's
// slices), each starting on an arena tensor's alignment.
bool contiguous_parts(const Shape& shape, int64_t axis, const std::vector<int64_t>& sizes, DType dtype) {
  int64_t outer = 1;
  for (int d = 0; d < int(axis); ++d) outer *= shape[d];
  if (outer != 1) return false;
  const int64_t row = shape.numel() / shape[int(axis)] * int64_t(dtype_size(dtype));
  for (int64_t size : sizes)
    if (size * row % kAlign != 0) return false;
  return true;
}

// A part of a pack, or of a concat whose parts are consecutive byte ranges, that is a whole
// arena tensor dying there is written in place instead: the part becomes a view of its place
// in the result (as DeepSpeed's contiguous gradient buffer), so the gradients of a ZeRO
// bucket, or chunk_mlp's slices, are not copied, and the result's bytes do not sit beside its
// parts'. The instruction's kernels skip a part already where it belongs (a pack then only
// zeroes its padding), and it still orders what reads the result after every part. The
// result lives from its first part's producer instead of from the instruction.
void parts_in_place(Program& p) {
  const Lifetimes live = lifetimes(p);
  Views views(p);
  for (int i = 0; i < int(p.instrs.size()); ++i) {
    const ir::Instr& ins = p.instrs[i];
    if ((ins.op != ir::Op::pack && ins.op != ir::Op::concat) || p.slots[ins.out[0]].kind != Slot::Kind::arena)
      continue;
    const int result = ins.out[0];
    if (ins.op == ir::Op::concat) {
      const int64_t axis = std::get<ir::ConcatAttrs>(ins.attrs).axis;
      std::vector<int64_t> sizes;
      for (int part : ins.in) sizes.push_back(p.slots[part].type.shape[int(axis)]);
      if (!contiguous_parts(p.slots[result].type.shape, axis, sizes, p.slots[result].type.dtype)) continue;
    }
    int64_t offset = 0;
    for (int part : ins.in) {
      const int r = p.root(part);
      const bool whole = p.slots[r].kind == Slot::Kind::arena && p.slots[part].alias_offset == 0 &&
                         p.slots[r].type == p.slots[part].type;
      if (whole && live.last[r] == i && r != result) views.retarget(p, r, result, offset);  // the part, and its views
      offset += p.slots[part].type.shape.numel() * int64_t(dtype_size(p.slots[part].type.dtype));
    }
  }
}

}  // namespace

namespace {
// "model.layers.3.mlp.up_proj.weight" -> "layer 3"; "" for other names.
std::string layer_of(const std::string& name) {
  for (const char* key : {".layers.", ".h."}) {
    const size_t at = name.find(key);
    if (at == std::string::npos) continue;
    const size_t b = at + std::string(key).size(), e = name.find('.', b);
    return "layer " + name.substr(b, e - b);
  }
  return "";
}

// Trace labels: the op, and the layer of the parameter it reads (instructions that read
// none inherit the layer of the one before them; the model's layers run in order).
void label(ir::Program& p) {
  std::string layer;
  for (ir::Instr& ins : p.instrs) {
    for (int s : ins.in) {
      const ir::Slot& slot = p.slots[s];
      if (slot.kind == ir::Slot::Kind::external && !layer_of(slot.name).empty()) layer = layer_of(slot.name);
    }
    ins.label = std::string(ir::op_name(ins.op)) + (layer.empty() ? "" : " (" + layer + ")");
  }
}
}  // namespace

StatusOr<ir::Program> lower(const ir::Graph& g, const ScheduleOptions& schedule_opts) {
  const int n_values = int(g.values.size());
  // Dead-code elimination: keep nodes whose outputs reach a graph output.
  const std::vector<bool> keep = ir::live_nodes(g);

  Program p;
  std::vector<int> slot_of(n_values, -1);
  auto new_slot = [&](Slot s) {
    p.slots.push_back(std::move(s));
    return int(p.slots.size()) - 1;
  };
  for (const ir::Arg& a : g.args) {
    const ir::Value& v = g.values[a.value];
    slot_of[a.value] = new_slot({Slot::Kind::external, v.type, 0, -1, v.name});
    (a.role == ir::ArgRole::param ? p.params : p.inputs).push_back(slot_of[a.value]);
  }
  std::map<ValueId, std::string> output_name;  // first output naming each value
  for (const ir::Output& o : g.outputs) output_name.emplace(o.value, o.name);
  // A cast to bf16 whose only reader is an all_gather folds into it: the gather converts its
  // own part as it sends (runtime/collective_exec.cc), so no converted copy sits in the arena
  // from the step's start, where the schedule would hoist the cast, until the gather is
  // issued (ZeRO-3's bf16 parameter gathers, sp_compiler/zero_shard.cc).
  std::vector<int> readers(n_values, 0), reader(n_values, -1);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (keep[i])
      for (ValueId v : g.nodes[i].inputs) readers[v]++, reader[v] = int(i);
  for (const ir::Output& o : g.outputs) readers[o.value]++;
  auto folds_into_gather = [&](const ir::Node& n) {
    return n.op == ir::Op::cast && std::get<ir::CastAttrs>(n.attrs).dtype == DType::bf16 &&
           g.type(n.inputs[0]).dtype == DType::f32 && readers[n.outputs[0]] == 1 &&
           g.nodes[size_t(reader[n.outputs[0]])].op == ir::Op::all_gather;
  };

  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!keep[i]) continue;
    const ir::Node& n = g.nodes[i];
    if (folds_into_gather(n)) {
      slot_of[n.outputs[0]] = slot_of[n.inputs[0]];
      continue;
    }
    // reshape and unpack are views of their input unless a result must land in an output
    // buffer of its own; so is the pack of one tensor that needs no padding (a ZeRO bucket
    // holding one large matrix: the packed copy would double its bytes where it is made), and
    // a split into consecutive byte ranges (chunk_mlp's sequence slices of one row: the
    // slices' copies would double the MLP input's bytes where they are made).
    bool any_output = false;
    for (ValueId v : n.outputs) any_output = any_output || output_name.count(v);
    const bool whole_pack = n.op == ir::Op::pack && n.inputs.size() == 1 &&
                            g.type(n.inputs[0]).shape.numel() == g.type(n.outputs[0]).shape.numel() &&
                            g.type(n.inputs[0]).dtype == g.type(n.outputs[0]).dtype;
    const bool view_split = n.op == ir::Op::split && [&] {
      const auto& a = std::get<ir::SplitAttrs>(n.attrs);
      return contiguous_parts(g.type(n.inputs[0]).shape, a.axis, a.sizes, g.type(n.inputs[0]).dtype);
    }();
    if ((n.op == ir::Op::reshape || n.op == ir::Op::unpack || whole_pack || view_split) && !any_output) {
      const int src = slot_of[n.inputs[0]];
      const bool src_alias = p.slots[src].kind == Slot::Kind::alias;
      const int root = src_alias ? p.slots[src].alias_of : src;
      int64_t offset = src_alias ? p.slots[src].alias_offset : 0;
      for (ValueId v : n.outputs) {
        Slot view{Slot::Kind::alias, g.type(v), 0, root, ""};
        view.alias_offset = offset;
        slot_of[v] = new_slot(std::move(view));
        offset += g.type(v).shape.numel() * int64_t(dtype_size(g.type(v).dtype));
      }
      continue;
    }
    ir::Instr ins{n.op, n.attrs, {}, {}};
    for (ValueId v : n.inputs) ins.in.push_back(slot_of[v]);
    if (n.op == ir::Op::fetch && p.slots[ins.in[0]].kind != Slot::Kind::host)
      return InvalidArgument("lower: fetch of %" + std::to_string(n.inputs[0]) + ", which no offload put in host memory");
    for (ValueId v : n.outputs) {
      auto it = output_name.find(v);
      const Slot::Kind kind = n.op == ir::Op::offload ? Slot::Kind::host : Slot::Kind::arena;
      if (kind == Slot::Kind::host && it != output_name.end())
        return InvalidArgument("lower: output " + it->second + " is an offloaded activation");
      slot_of[v] = it != output_name.end() ? new_slot({Slot::Kind::external, g.type(v), 0, -1, it->second})
                                           : new_slot({kind, g.type(v), 0, -1, ""});
      ins.out.push_back(slot_of[v]);
    }
    p.instrs.push_back(std::move(ins));
  }
  // Every output gets its own external slot; a value already bound elsewhere (an argument, or
  // a value named by an earlier output) is copied into it.
  for (const ir::Output& o : g.outputs) {
    int s = slot_of[o.value];
    if (s < 0) return Internal("output " + o.name + " has no producer after lowering");
    if (p.slots[s].kind == Slot::Kind::external && p.slots[s].name == o.name) {
      p.outputs.push_back(s);
      continue;
    }
    int dst = new_slot({Slot::Kind::external, g.type(o.value), 0, -1, o.name});
    p.instrs.push_back({ir::Op::reshape, ir::ShapeAttrs{g.type(o.value).shape.dims()}, {s}, {dst}});
    p.outputs.push_back(dst);
  }

  label(p);
  schedule(p, schedule_opts);
  accumulate_in_place(p);
  parts_in_place(p);

  // Liveness of arena slots, after the *_in_place steps made some views.
  const Lifetimes live = lifetimes(p);
  const std::vector<int>& first = live.first;
  const std::vector<int>& last = live.last;
  std::vector<Interval> iv, host;
  for (int s = 0; s < int(p.slots.size()); ++s) {
    if (first[s] < 0) continue;
    if (p.slots[s].kind == Slot::Kind::arena) iv.push_back({s, first[s], last[s], aligned_bytes(p.slots[s].type)});
    if (p.slots[s].kind == Slot::Kind::host) host.push_back({s, first[s], last[s], aligned_bytes(p.slots[s].type)});
  }
  p.arena_bytes = assign_offsets(iv, p.slots);
  p.host_bytes = assign_offsets(host, p.slots);
  AUTOSP_LOG(1) << "lower: " << p.instrs.size() << " instructions, " << iv.size() << " arena tensors, arena "
                << p.arena_bytes << " bytes (live peak " << arena_peak(p, live).bytes << ")";
  return p;
}

Lifetimes lifetimes(const ir::Program& p) {
  Lifetimes l{std::vector<int>(p.slots.size(), -1), std::vector<int>(p.slots.size(), -1)};
  for (int i = 0; i < int(p.instrs.size()); ++i) {
    const int until = p.instrs[i].stream == ir::Stream::comm ? std::max(i, p.instrs[i].wait_before) : i;
    for (int s : p.instrs[i].out) {
      if (l.first[p.root(s)] < 0) l.first[p.root(s)] = i;
      l.last[p.root(s)] = std::max(l.last[p.root(s)], until);
    }
    for (int s : p.instrs[i].in) l.last[p.root(s)] = std::max(l.last[p.root(s)], until);
  }
  return l;
}

ArenaPeak arena_peak(const ir::Program& p, const Lifetimes& l) {
  const int n = int(p.instrs.size());
  std::vector<int64_t> delta(size_t(n) + 2, 0);
  for (int s = 0; s < int(p.slots.size()); ++s) {
    if (p.slots[s].kind != Slot::Kind::arena || l.first[s] < 0) continue;
    const int64_t b = aligned_bytes(p.slots[s].type);
    delta.at(size_t(l.first[s])) += b;
    delta.at(size_t(l.last[s]) + 1) -= b;
  }
  ArenaPeak peak;
  int64_t cur = 0;
  for (int i = 0; i <= n; ++i)
    if ((cur += delta[size_t(i)]) > peak.bytes) peak = {std::min(i, n - 1), cur};
  return peak;
}

}  // namespace autosp::sp
