#include "sp_compiler/shard_sequence.h"

#include <map>
#include <optional>

#include "core/log.h"
#include "ir/builder.h"

namespace autosp::sp {

namespace {

using ir::Op;
using ir::Sharding;
using ir::ShardKind;
using ir::ValueId;

const char* const kSequenceInputs[] = {"tokens", "targets", "positions", "segments"};

bool is_sequence_input(const std::string& name) {
  for (const char* s : kSequenceInputs)
    if (name == s) return true;
  return false;
}

class Rewriter {
 public:
  Rewriter(const ir::Graph& in, const SpOptions& opt, const SpPlan& plan)
      : in_(in), opt_(opt), plan_(plan), b_(out_), map_(in.values.size(), ir::kNoValue) {
    out_.name = in.name;
  }

  StatusOr<ir::Graph> run() {
    for (const ir::Arg& a : in_.args) RETURN_IF_ERROR(arg(a));
    for (size_t i = 0; i < in_.nodes.size(); ++i) RETURN_IF_ERROR(node(i));
    for (const ir::Output& o : in_.outputs) b_.output(o.name, use(map_[o.value]));
    return std::move(out_);
  }

 private:
  Sharding& sh(ValueId v) { return out_.values[v].sharding; }
  ValueId set(ValueId v, Sharding s) {
    sh(v) = s;
    return v;
  }
  static Sharding shard(int d) { return {ShardKind::shard, d}; }
  static Sharding replicate() { return {ShardKind::replicate, -1}; }

  // A partial sum is all-reduced (once) before anything reads it.
  ValueId use(ValueId v) {
    if (sh(v).kind != ShardKind::partial) return v;
    auto it = reduced_.find(v);
    if (it != reduced_.end()) return it->second;
    ValueId r = b_.op1(Op::all_reduce, {v}, ir::GroupAttrs{ir::MeshGroup::world, opt_.world()});
    sh(r) = replicate();
    reduced_[v] = r;
    return r;
  }

  Status arg(const ir::Arg& a) {
    const ir::Value& v = in_.values[a.value];
    if (a.role == ir::ArgRole::param) {
      map_[a.value] = set(out_.add_arg(v.name, v.type, a.role, a.init), replicate());
      return Status::Ok();
    }
    if (!is_sequence_input(v.name)) {
      map_[a.value] = set(out_.add_arg(v.name, v.type, a.role), replicate());
      return Status::Ok();
    }
    Shape s = v.type.shape;
    if (s.rank() != 2 || s[1] != plan_.layout.seq_len)
      return InvalidArgument("input " + v.name + " must be [batch, " + std::to_string(plan_.layout.seq_len) +
                             "], got " + s.str());
    s[1] = plan_.layout.local();
    map_[a.value] = set(out_.add_arg(v.name, {v.type.dtype, s}, a.role), shard(1));
    batch_ = s[0];
    return Status::Ok();
  }

  ValueId token_index() {
    if (token_index_ == ir::kNoValue)
      token_index_ = set(b_.input(kTokenIndexInput, DType::i32, {batch_, plan_.layout.local()}), shard(1));
    return token_index_;
  }

  // all_gather of an i32 [batch, local] side input over `group` (memoised per value).
  ValueId gather_tokens(ValueId v, ir::MeshGroup group, int size) {
    auto key = std::make_pair(v, int(group));
    auto it = gathered_.find(key);
    if (it != gathered_.end()) return it->second;
    ValueId r = b_.op1(Op::all_gather, {v}, ir::AxisCollectiveAttrs{group, size, 1});
    gathered_[key] = r;
    return r;
  }

  Status node(size_t index) {
    const ir::Node& n = in_.nodes[index];
    std::vector<ValueId> ins;
    for (ValueId v : n.inputs) ins.push_back(use(map_[v]));
    switch (n.op) {
      case Op::attention: return attention(index, n, ins);
      case Op::cross_entropy: return per_token(n, ins, /*partial_outputs=*/0b011u);
      case Op::reshape: return reshape(n, ins);
      case Op::permute: return permute(n, ins);
      case Op::sum:
      case Op::mean:
      case Op::broadcast: return reduction(n, ins);
      default: return per_token(n, ins, 0u);
    }
  }

  // Ops that act independently on each token (or on the batch dims of matmul): they run on
  // the local slice unchanged; outputs keep the first sharded operand's sharded axis.
  Status per_token(const ir::Node& n, const std::vector<ValueId>& ins, uint32_t partial_outputs) {
    std::optional<Sharding> s;
    for (size_t k = 0; k < ins.size(); ++k) {
      if (sh(ins[k]).kind != ShardKind::shard) continue;
      if (!s) s = sh(ins[k]);
      const Shape& shape = out_.type(ins[k]).shape;
      if (n.op == Op::matmul && k < 2 && sh(ins[k]).dim >= shape.rank() - (k == 0 ? 1 : 2))
        return InvalidArgument("shard_sequence: matmul contracts over the sequence axis of operand " +
                               std::to_string(k) + "; not supported");
    }
    auto outs = b_.op(n.op, ins, n.attrs);
    for (size_t k = 0; k < outs.size(); ++k) {
      if (partial_outputs >> k & 1u)
        sh(outs[k]) = {ShardKind::partial, -1};
      else
        sh(outs[k]) = s.value_or(replicate());
      // embedding / cross_entropy change rank; the sequence stays axis 1 of their [B, T, ...]
      map_[n.outputs[k]] = outs[k];
    }
    return Status::Ok();
  }

  // reshape keeps the sequence axis when the dims before it multiply to the same value.
  Status reshape(const ir::Node& n, const std::vector<ValueId>& ins) {
    const Sharding s = sh(ins[0]);
    auto attrs = std::get<ir::ShapeAttrs>(n.attrs);
    if (s.kind != ShardKind::shard) {
      map_[n.outputs[0]] = set(b_.op1(Op::reshape, ins, attrs), s);
      return Status::Ok();
    }
    const Shape& global_in = in_.type(n.inputs[0]).shape;
    int64_t before = 1;
    for (int i = 0; i < s.dim; ++i) before *= global_in[i];
    int64_t acc = 1;
    for (int o = 0; o < int(attrs.shape.size()); ++o) {
      if (acc == before && attrs.shape[o] == global_in[s.dim]) {
        attrs.shape[o] = out_.type(ins[0]).shape[s.dim];
        map_[n.outputs[0]] = set(b_.op1(Op::reshape, ins, attrs), shard(o));
        return Status::Ok();
      }
      acc *= attrs.shape[o];
    }
    return InvalidArgument("shard_sequence: reshape to " + Shape(attrs.shape).str() +
                           " merges or splits the sequence axis; not supported");
  }

  Status permute(const ir::Node& n, const std::vector<ValueId>& ins) {
    const auto& perm = std::get<ir::PermuteAttrs>(n.attrs).perm;
    Sharding s = sh(ins[0]);
    if (s.kind == ShardKind::shard)
      for (int i = 0; i < int(perm.size()); ++i)
        if (perm[i] == s.dim) s.dim = i;
    map_[n.outputs[0]] = set(b_.op1(Op::permute, ins, n.attrs), s);
    return Status::Ok();
  }

  Status reduction(const ir::Node& n, const std::vector<ValueId>& ins) {
    const Sharding s = sh(ins[0]);
    if (s.kind == ShardKind::shard)
      return InvalidArgument(std::string("shard_sequence: ") + std::string(ir::op_name(n.op)) +
                             " over a sequence-sharded tensor; reduce with cross_entropy's (sum, count) instead");
    map_[n.outputs[0]] = set(b_.op1(n.op, ins, n.attrs), s);
    return Status::Ok();
  }

  const AttentionDecision& decision(size_t index) const {
    for (const AttentionDecision& d : plan_.attention)
      if (d.node == index) return d;
    AUTOSP_CHECK(false) << "no plan for attention node " << index;
    return plan_.attention[0];
  }

  // [B, T, Hkv, D] -> [B, T, Hkv·f, D], each head repeated f times in place (GQA groups stay
  // contiguous, so query head h still maps to kv head h / (H / Hkv')).
  ValueId repeat_heads(ValueId x, int f) {
    if (f == 1) return x;
    const Shape s = out_.type(x).shape;
    ValueId e = b_.broadcast(x, {s[0], s[1], s[2], f, s[3]}, {3});
    return set(b_.reshape(e, {s[0], s[1], s[2] * f, s[3]}), shard(1));
  }

  Status attention(size_t index, const ir::Node& n, std::vector<ValueId> ins) {
    auto attrs = std::get<ir::AttentionAttrs>(n.attrs);
    const bool has_seg = ins.size() == 4;
    if (opt_.sp == 1 || sh(ins[0]).kind != ShardKind::shard) return per_token(n, ins, 0u);
    if (attrs.indexed) return InvalidArgument("shard_sequence: the model's attention is already indexed");
    const AttentionDecision& d = decision(index);
    ValueId q = ins[0], k = repeat_heads(ins[1], d.kv_repeat), v = repeat_heads(ins[2], d.kv_repeat);
    std::optional<ValueId> seg;
    if (has_seg) seg = ins[3];
    ValueId o;
    const bool ulysses_part = d.strategy != Strategy::ring;
    const ir::MeshGroup ug = d.strategy == Strategy::hybrid ? ir::MeshGroup::sp_inner : ir::MeshGroup::sp;
    if (ulysses_part) {  // sequence -> heads
      const ir::AllToAllAttrs to_heads{ug, d.inner, 2, 1};
      q = b_.op1(Op::all_to_all, {q}, to_heads);
      k = b_.op1(Op::all_to_all, {k}, to_heads);
      v = b_.op1(Op::all_to_all, {v}, to_heads);
      for (ValueId x : {q, k, v}) sh(x) = shard(2);
    }
    std::optional<ValueId> idx;
    if (plan_.indexed()) idx = ulysses_part ? gather_tokens(token_index(), ug, d.inner) : token_index();
    if (seg && ulysses_part) seg = gather_tokens(*seg, ug, d.inner);
    if (d.strategy == Strategy::ulysses) {
      std::vector<ValueId> a{q, k, v};
      if (seg) a.push_back(*seg);
      if (idx) a.push_back(*idx);
      attrs.indexed = idx.has_value();
      o = b_.op(Op::attention, a, attrs)[0];
    } else {
      const ir::MeshGroup rg = d.strategy == Strategy::hybrid ? ir::MeshGroup::sp_outer : ir::MeshGroup::sp;
      std::vector<ValueId> a{q, k, v, *idx};
      if (seg) a.push_back(*seg);
      o = b_.op(Op::ring_attention, a, ir::RingAttentionAttrs{rg, d.outer, attrs.causal, attrs.scale,
                                                                  /*zigzag=*/plan_.layout.zigzag})[0];
    }
    if (ulysses_part) {  // heads -> sequence
      sh(o) = shard(2);
      o = b_.op1(Op::all_to_all, {o}, ir::AllToAllAttrs{ug, d.inner, 1, 2});
    }
    map_[n.outputs[0]] = set(o, shard(1));
    // The lse of the model's attention has no consumer in any model (only the backward reads
    // it, and autodiff runs after this pass); keep the mapping honest anyway.
    for (const ir::Node& m : in_.nodes)
      for (ValueId x : m.inputs)
        if (x == n.outputs[1])
          return InvalidArgument("shard_sequence: a forward op reads attention's log-sum-exp; not supported");
    return Status::Ok();
  }

  const ir::Graph& in_;
  const SpOptions& opt_;
  const SpPlan& plan_;
  ir::Graph out_;
  ir::Builder b_;
  std::vector<ValueId> map_;
  std::map<ValueId, ValueId> reduced_;
  std::map<std::pair<ValueId, int>, ValueId> gathered_;
  ValueId token_index_ = ir::kNoValue;
  int64_t batch_ = 1;
};

class ShardSequence final : public Pass {
 public:
  explicit ShardSequence(SpOptions opt) : opt_(std::move(opt)) {}
  std::string_view name() const override { return "shard_sequence"; }

  Status run(ir::Graph& g, const PassContext&) override {
    if (opt_.world() == 1) {
      AUTOSP_LOG(1) << "shard_sequence: world size 1, nothing to do";
      return Status::Ok();
    }
    ASSIGN_OR_RETURN(SpPlan plan, plan_sequence_parallel(g, opt_));
    Rewriter r(g, opt_, plan);
    ASSIGN_OR_RETURN(ir::Graph out, r.run());
    g = std::move(out);
    return Status::Ok();
  }

 private:
  SpOptions opt_;
};

}  // namespace

std::unique_ptr<Pass> make_shard_sequence_pass(const SpOptions& opt) { return std::make_unique<ShardSequence>(opt); }

}  // namespace autosp::sp
