// offload_activations: activations that the forward leaves for the backward wait in host
// memory instead of the device's. Every forward value of at least `min_bytes` that depends on
// the step's data and that a backward node reads (after recompute: the layer inputs, and
// what the policy keeps; not a weight's cast, made from parameters alone) is
// copied out right after it is computed (offload, into the host arena) and copied back
// before its first backward reader (fetch); the backward reads the copy. The device then
// holds only the step's working set, at the price of two host-link transfers per kept
// tensor, which the schedule runs on the communication stream (fetches prefetched like ZeRO
// gathers). Losses and gradients are unchanged (copies are exact).
#pragma once
#include <cstdint>
#include <memory>

#include "sp_compiler/pass.h"

namespace autosp::sp {

std::unique_ptr<Pass> make_offload_activations_pass(int64_t min_bytes = int64_t(1) << 20);

}  // namespace autosp::sp
