// --trace FILE: one training step as a Chrome trace (JSON; opens in Perfetto or
// chrome://tracing): a process per rank, a thread per stream, a span per instruction, labelled
// with its op and layer, and "wait" spans where compute waited for communication.
#pragma once
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/comm.h"
#include "runtime/executor.h"

namespace autosp::trainer {

// Collective when world is set: every rank's events go to rank 0, which writes `path`.
Status write_trace(const std::string& path, runtime::Communicator* world, const std::vector<runtime::TraceEvent>& events);

}  // namespace autosp::trainer
