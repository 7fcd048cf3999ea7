// The sequence-parallel plan: per attention op, which strategy (Ulysses all-to-all, Ring,
// or hybrid = Ulysses inside groups × Ring across them) and why; and the token layout every
// rank shares (which global positions each rank holds, with padding). Both the
// shard_sequence pass and the runtime's data feeding call plan_sequence_parallel, so they
// cannot disagree.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "ir/graph.h"

namespace autosp::sp {

// The mesh and the user's choice (config keys parallel.sp, parallel.sp_strategy).
struct SpOptions {
  int dp = 1;
  int sp = 1;
  std::string strategy = "auto";  // "auto" | "ulysses" | "ring" | "hybrid"
  // Links, for the cost model (sp_compiler/cost_model.h): bandwidth inside a node and across
  // nodes, and ranks per node (SP groups are consecutive ranks). Only ratios matter.
  double intra_bw = 1.0, inter_bw = 1.0;
  int ranks_per_node = 1 << 20;
  int world() const { return dp * sp; }
};

enum class Strategy { ulysses, ring, hybrid };
const char* strategy_name(Strategy s);

struct AttentionDecision {
  size_t node = 0;          // index of the attention node in the forward graph
  Strategy strategy = Strategy::ulysses;
  int inner = 1, outer = 1;  // Ulysses degree × ring degree (ulysses: sp×1, ring: 1×sp)
  int kv_repeat = 1;         // K/V heads repeated so the Ulysses degree divides them
  int64_t comm_elems = 0;    // forward elements sent per rank
  std::string reason;
};

// Which global token positions each SP rank holds. contiguous: rank r holds block r.
// zigzag (when any op uses a ring): the sequence is cut into 2·outer chunks, ring group g
// holds chunks g and 2·outer−1−g (so causal work balances), and the inner ranks of a group
// split that pair of chunks contiguously. Positions ≥ seq_len are padding.
struct SeqLayout {
  int64_t seq_len = 0, padded = 0;
  int sp = 1, inner = 1;
  bool zigzag = false;
  int64_t local() const { return padded / sp; }
  // Global position of each of sp_rank's local tokens, in local order.
  std::vector<int32_t> positions(int sp_rank) const;
};

struct SpPlan {
  std::vector<AttentionDecision> attention;
  SeqLayout layout;
  // Attention needs explicit token indices (the layout is not in sequence order).
  bool indexed() const { return layout.zigzag; }
};

// Global sequence length comes from the "tokens" input [batch, seq].
StatusOr<SpPlan> plan_sequence_parallel(const ir::Graph& forward, const SpOptions& opt);

}  // namespace autosp::sp
