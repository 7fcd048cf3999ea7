// recompute: activation checkpointing as a graph rewrite, after autodiff. A forward value the
// backward reads is either kept (alive from forward to its backward use) or recomputed: its
// node, and the recomputed nodes it depends on, are emitted again right before the first
// backward node that reads it, so the forward copy dies early. Policies:
//   none      — keep everything the backward reads;
//   selective — recompute cheap per-token ops (norms, rope, activations, elementwise, views);
//               keep matmul outputs, attention O/LSE, the loss;
//   layer     — keep only each layer's input, attention O/LSE and collective results, except
//               the all-to-all of O back to the sequence layout (Ulysses), which is re-run
//               from the kept O; recompute the rest of the layer (projections and MLP
//               included) in backward;
//   full      — keep only each layer's input: attention and the layer's collectives (Ulysses
//               all-to-alls) run again in backward, trading their compute and communication
//               for the memory of O (as large as the layer's input) and the collectives'
//               results.
// Below "full", attention O/LSE are kept, so recompute never repeats the quadratic attention
// forward; "selective" repeats no communication, "layer" only O's all-to-all.
#pragma once
#include <memory>
#include <string>

#include "sp_compiler/pass.h"

namespace autosp::sp {

enum class RecomputePolicy { none, selective, layer, full };
const char* recompute_name(RecomputePolicy p);
StatusOr<RecomputePolicy> parse_recompute(const std::string& name);

std::unique_ptr<Pass> make_recompute_pass(RecomputePolicy policy);

}  // namespace autosp::sp
