// shard_sequence: the SP pass. Rewrites the single-device forward graph into the program
// each rank runs: the sequence inputs (tokens, targets, positions, segments) become this
// rank's Shard(seq) slice [batch, local]; parameters are Replicate; every op is re-emitted on
// local shapes by its sharding rule; attention is rewritten per the plan (sp_plan.h) into
// all_to_all + local attention (Ulysses), ring_attention (Ring) or both (hybrid); and
// partial sums (the loss sum and token count) are all-reduced over the world before use.
// With a zigzag layout the pass adds the input "token_index" (each local token's global
// position), which attention uses for causality.
#pragma once
#include <memory>

#include "sp_compiler/pass.h"
#include "sp_compiler/sp_plan.h"

namespace autosp::sp {

inline constexpr const char* kTokenIndexInput = "token_index";

std::unique_ptr<Pass> make_shard_sequence_pass(const SpOptions& opt);

}  // namespace autosp::sp
