// lower: Graph -> Program. Removes nodes that feed no output, turns reshapes into views,
// binds arguments and outputs to named external slots, lets a fused matmul accumulate in
// place over an operand that dies there, and places every other value in one arena at
// offsets chosen from liveness (greedy by size over lifetimes), so the executor allocates
// exactly `arena_bytes` once.
#pragma once
#include "core/status.h"
#include "ir/graph.h"
#include "ir/program.h"
#include "sp_compiler/schedule.h"

namespace autosp::sp {

// The schedule (sp_compiler/schedule.h) runs between building the instruction list and
// planning memory, so in-flight collective buffers are live until their wait.
StatusOr<ir::Program> lower(const ir::Graph& g, const ScheduleOptions& schedule_opts = {false});

// Each slot's lifetime as the arena plan sees it: the first instruction writing it (or a view
// of it) and the last one using it, a collective's buffers counting until its wait; -1 for a
// slot no instruction touches. Indexed by slot; meaningful for root slots (views extend
// their root's lifetime).
struct Lifetimes {
  std::vector<int> first, last;
};
Lifetimes lifetimes(const ir::Program& p);
// The instruction at which the most arena bytes are alive (ties: the first), and how many,
// from the program's lifetimes.
struct ArenaPeak {
  int at = -1;
  int64_t bytes = 0;
};
ArenaPeak arena_peak(const ir::Program& p, const Lifetimes& l);

}  // namespace autosp::sp
