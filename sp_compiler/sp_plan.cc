#include "sp_compiler/sp_plan.h"

#include <limits>

#include "core/log.h"

namespace autosp::sp {

const char* strategy_name(Strategy s) {
  switch (s) {
    case Strategy::ulysses: return "ulysses";
    case Strategy::ring: return "ring";
    case Strategy::hybrid: return "hybrid";
  }
  return "?";
}

std::vector<int32_t> SeqLayout::positions(int sp_rank) const {
  std::vector<int32_t> out;
  const int64_t n = local();
  if (!zigzag) {
    for (int64_t i = 0; i < n; ++i) out.push_back(int32_t(sp_rank * n + i));
    return out;
  }
  const int outer = sp / inner;
  const int g = sp_rank / inner, u = sp_rank % inner;
  const int64_t chunk = padded / (2 * outer);
  std::vector<int32_t> group;  // chunks g and 2·outer−1−g
  for (int64_t c : {int64_t(g), int64_t(2 * outer - 1 - g)})
    for (int64_t i = 0; i < chunk; ++i) group.push_back(int32_t(c * chunk + i));
  out.assign(group.begin() + u * n, group.begin() + (u + 1) * n);
  return out;
}

namespace {

// Smallest K/V head repeat factor f (dividing the GQA group size) with degree | Hkv·f.
int kv_repeat_for(int64_t h, int64_t hkv, int degree) {
  for (int64_t f = 1; f <= h / hkv; ++f)
    if ((h / hkv) % f == 0 && (hkv * f) % degree == 0) return int(f);
  return 0;
}

struct Candidate {
  Strategy s;
  int inner, outer, repeat;
  int64_t elems;  // elements sent per rank
  double cost;    // ... divided by the bandwidth of the links they cross
};

// Elements one rank sends in the forward of one attention op (the backward mirrors it).
// Ulysses moves q, k, v and o once (each rank keeps 1/inner of them);
// ring moves this rank's K and V outer−1 times.
int64_t ulysses_elems(int64_t tokens, int64_t h, int64_t hkv_eff, int64_t d, int inner) {
  return (inner - 1) * tokens * d * (2 * h + 2 * hkv_eff) / inner;
}

}  // namespace

StatusOr<SpPlan> plan_sequence_parallel(const ir::Graph& g, const SpOptions& opt) {
  SpPlan plan;
  const ir::ValueId tokens = g.find_arg("tokens");
  if (tokens == ir::kNoValue || g.type(tokens).shape.rank() != 2)
    return InvalidArgument("sequence parallelism needs an input named 'tokens' of shape [batch, seq]");
  const int64_t batch = g.type(tokens).shape[0], seq = g.type(tokens).shape[1];
  const int p = opt.sp;
  if (p < 1) return InvalidArgument("parallel.sp must be >= 1");
  if (opt.strategy != "auto" && opt.strategy != "ulysses" && opt.strategy != "ring" && opt.strategy != "hybrid")
    return InvalidArgument("parallel.sp_strategy: unknown strategy \"" + opt.strategy + "\"");

  int layout_inner = 0;
  for (size_t i = 0; i < g.nodes.size() && p > 1; ++i) {
    const ir::Node& n = g.nodes[i];
    if (n.op != ir::Op::attention) continue;
    const Shape& q = g.type(n.inputs[0]).shape;
    const Shape& k = g.type(n.inputs[1]).shape;
    const int64_t h = q[2], hkv = k[2], d = q[3], local = batch * ((seq + p - 1) / p);
    std::vector<Candidate> feasible;
    std::string why_not;
    // Ulysses groups are consecutive ranks: inside a node unless larger than one. A ring over
    // `outer` groups of `inner` consecutive ranks spans inner·outer ranks.
    auto bw = [&](int span) { return span > opt.ranks_per_node ? opt.inter_bw : opt.intra_bw; };
    if (int f = kv_repeat_for(h, hkv, p); h % p == 0 && f > 0) {
      const int64_t e = ulysses_elems(local, h, hkv * f, d, p);
      feasible.push_back({Strategy::ulysses, p, 1, f, e, double(e) / bw(p)});
    } else {
      why_not += "ulysses needs sp=" + std::to_string(p) + " to divide " + std::to_string(h) + " heads";
    }
    const int64_t ring_e = int64_t(p - 1) * 2 * local * hkv * d;
    feasible.push_back({Strategy::ring, 1, p, 1, ring_e, double(ring_e) / bw(p)});
    // Hybrid: the largest proper Ulysses degree the heads allow, ring across the rest.
    for (int inner = p / 2; inner >= 2; --inner) {
      if (p % inner != 0 || h % inner != 0) continue;
      const int f = kv_repeat_for(h, hkv, inner);
      if (f == 0) continue;
      const int outer = p / inner;
      const int64_t ue = ulysses_elems(local, h, hkv * f, d, inner), re = int64_t(outer - 1) * 2 * local * hkv * f * d;
      feasible.push_back({Strategy::hybrid, inner, outer, f, ue + re, double(ue) / bw(inner) + double(re) / bw(p)});
      break;
    }
    AttentionDecision dec;
    dec.node = i;
    const Candidate* pick = nullptr;
    if (opt.strategy == "auto") {
      for (const Candidate& c : feasible)
        if (!pick || c.cost < pick->cost) pick = &c;  // ties keep the earlier: ulysses, then ring
      dec.reason = std::string("auto: least communication time (") + std::to_string(pick->elems) +
                   " elements/rank over its links)";
    } else {
      for (const Candidate& c : feasible)
        if (opt.strategy == strategy_name(c.s)) pick = &c;
      if (pick) {
        dec.reason = "parallel.sp_strategy = " + opt.strategy;
      } else {
        for (const Candidate& c : feasible)
          if (c.s == Strategy::ring) pick = &c;
        dec.reason = "parallel.sp_strategy = " + opt.strategy + " is impossible here (" +
                     (opt.strategy == "ulysses" ? why_not : "no Ulysses degree in [2, sp/2] divides the heads") +
                     "), falling back to ring";
      }
    }
    dec.strategy = pick->s;
    dec.inner = pick->inner;
    dec.outer = pick->outer;
    dec.kv_repeat = pick->repeat;
    dec.comm_elems = pick->elems;
    AUTOSP_LOG(1) << "shard_sequence: attention node " << i << " (" << h << " heads, " << hkv << " kv heads): "
                  << strategy_name(dec.strategy) << " " << dec.inner << "x" << dec.outer << ", " << dec.reason;
    if (dec.strategy != Strategy::ulysses) {
      if (layout_inner == 0) layout_inner = dec.inner;
      if (layout_inner != dec.inner)
        return InvalidArgument("attention ops chose different hybrid degrees; force parallel.sp_strategy");
    }
    plan.attention.push_back(dec);
  }

  SeqLayout& L = plan.layout;
  L.seq_len = seq;
  L.sp = p;
  L.zigzag = layout_inner > 0;
  L.inner = L.zigzag ? layout_inner : 1;
  const int64_t multiple = L.zigzag ? 2 * int64_t(p) : int64_t(p);
  L.padded = (seq + multiple - 1) / multiple * multiple;
  if (L.padded != seq)
    AUTOSP_LOG(1) << "shard_sequence: seq_len " << seq << " padded to " << L.padded << " (a multiple of " << multiple
                  << "); padding is masked and never scored";
  return plan;
}

}  // namespace autosp::sp
