// Program: the lowered form the executor runs with no graph logic left. A flat list of
// instructions over slots; each slot is a tensor that lives either at a fixed offset in one
// arena (planned by liveness, so dead activations' bytes are reused), or outside it
// (arguments and outputs, bound by name by the runtime), or as a view of another slot
// (reshape and unpack need no copy).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace autosp::ir {

struct Slot {
  // host: in the host arena (an offloaded activation; sp_compiler/offload_activations.h).
  enum class Kind : uint8_t { arena, external, alias, host } kind = Kind::arena;
  TensorType type;
  int64_t offset = 0;   // arena, host: byte offset in that arena
  int alias_of = -1;    // alias: the slot whose bytes this views (never itself an alias)
  std::string name;     // external: the argument or output name it is bound to
  int64_t alias_offset = 0;  // alias: byte offset into that slot (unpack's parts)
};

enum class Stream : uint8_t { compute, comm };

struct Instr {
  Op op;
  Attrs attrs;
  std::vector<int> in, out;  // slot indices
  Stream stream = Stream::compute;
  // comm stream: the instruction before which this one must have finished (its first compute
  // consumer); instrs.size() means the end of the step. Set by the schedule pass.
  int wait_before = -1;
  std::string label = {};  // for traces: the op and the layer it belongs to
};

struct Program {
  std::vector<Slot> slots;
  std::vector<Instr> instrs;
  int64_t arena_bytes = 0;
  int64_t host_bytes = 0;  // the host arena (pinned on a GPU): offloaded activations
  // External slots by role, in graph order.
  std::vector<int> inputs, params, outputs;

  int find_external(const std::string& name) const {
    for (int i = 0; i < int(slots.size()); ++i)
      if (slots[i].kind == Slot::Kind::external && slots[i].name == name) return i;
    return -1;
  }
  // The slot whose bytes s occupies: views (reshape/unpack aliases) read their root's.
  int root(int s) const { return slots[s].kind == Slot::Kind::alias ? slots[s].alias_of : s; }
};

}  // namespace autosp::ir
