// Feeds one rank's share of a batch into its program's inputs: rows of its data-parallel
// replica, and the token positions its sequence-parallel rank holds under the plan's layout
// (contiguous or zigzag, with padding). Reads only those tokens from the memory map.
#pragma once
#include "runtime/executor.h"
#include "sp_compiler/sp_plan.h"
#include "trainer/data.h"

namespace autosp::trainer {

struct ShardSpec {
  int64_t row_begin = 0, row_end = 0;  // this replica's rows of the global batch
  std::vector<int32_t> positions;      // global token position of each local token (≥ seq_len: padding)
  int64_t seq_len = 0;
};

// Padding tokens: token 0, target -1 (never scored), position 0, segment -1 (a document of
// their own), and token_index = their position after every real token, so causal attention
// never lets a real token see them.
void feed_shard(const DataLoader& loader, int64_t step, const ShardSpec& spec, runtime::Executor& ex);

}  // namespace autosp::trainer
