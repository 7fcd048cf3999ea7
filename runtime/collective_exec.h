// Runs the communication instructions of a Program (all_to_all, all_gather, reduce_scatter,
// all_reduce, send_recv, ring_attention and its backward) on the mesh's communicators.
// The tensors live where mem says (sp_collectives.h explains the ordering with a device
// MemOps and a stream-ordered communicator); ring attention here runs on host tensors only
// (a device backend runs it itself: Backend::run_ring_attention).
#pragma once
#include <span>

#include "core/tensor.h"
#include "ir/program.h"
#include "runtime/mem_ops.h"
#include "runtime/mesh.h"
#include "runtime/ring_attention.h"

namespace autosp::runtime {

// Collectives, ring attention, and the host transfers (offload, fetch; these need no mesh:
// the executor copies them through the backend's MemOps).
bool is_communication(ir::Op op);
void run_communication(const Mesh& mesh, const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out,
                       MemOps& mem = host_mem_ops());

// For a backend running ring_attention / ring_attention_backward itself: the instruction's
// ring communicator (checked against the program's group size) and its arguments (idx and
// seg point into the instruction's index and segment tensors, wherever those live).
Communicator& ring_communicator(const Mesh& mesh, const ir::Instr& ins);
RingAttentionArgs ring_attention_args(const ir::Instr& ins, std::span<const Tensor> in);

}  // namespace autosp::runtime
