// schedule: orders a lowered instruction list over two streams. Collectives (all_to_all,
// all_gather, reduce_scatter, all_reduce, send_recv) go to the communication stream, which a
// per-rank thread runs in FIFO order; each is a start (issued at its place in the list) and a
// wait (before its first compute consumer, or at the end of the step). Starts move as early
// as data dependencies allow — the most urgent first — and, for collectives whose results the
// step's compute reads further (all-to-alls, ZeRO-3 parameter gathers; not a gradient
// bucket's unpack into the step's outputs), within a budget of bytes in
// flight (an in-flight buffer is live memory): one may start early while at most twice its
// own bytes are in flight, so a gather runs ahead of its layer without all gathers running
// at once. Host transfers (offload, fetch) run on the same stream: an offload is waited for
// after its source's last forward reader, a fetch starts one kept tensor ahead of its use. Compute that only feeds collectives (the pack of a ZeRO
// bucket's gradients) moves right after its inputs are ready, and gradient reductions start
// as soon as their bucket is complete, so the reduction of layer l's bucket overlaps the
// backward of layer l-1; each is waited for once the reductions started after it add up to
// twice its bytes (so its buffers are reused during the backward, not held to the end), and
// stage 0's unpack of a reduced bucket into the step's outputs moves to that wait.
// Other waits stay as late as possible. Every rank computes the same
// schedule, so collectives are issued in the same order everywhere.
//
// Ring attention is a compute-stream op: its K/V exchange overlaps its block attention
// inside the op (runtime/ring_attention.cc).
#pragma once
#include <cstdint>
#include <vector>

#include "ir/program.h"

namespace autosp::sp {

struct ScheduleOptions {
  bool overlap = true;                    // false: the plain serial order, collectives on the main thread
  // Collective outputs issued but not yet waited for. 0: relative to each collective (it may
  // start early while at most twice its own bytes are in flight), which lets the next
  // buckets' ZeRO-3 gathers or a layer's Q/K/V all-to-alls run ahead, not all of them at once.
  int64_t inflight_bytes = 0;
};

// Reorders p.instrs (before memory planning) and sets each instruction's stream and, for
// collectives, the index of the instruction that waits for them.
void schedule(ir::Program& p, const ScheduleOptions& opt);

}  // namespace autosp::sp
