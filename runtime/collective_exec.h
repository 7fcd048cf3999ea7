// Runs the communication instructions of a Program (all_to_all, all_gather, reduce_scatter,
// all_reduce, send_recv, ring_attention and its backward) on the mesh's communicators.
// The tensors live where mem says (sp_collectives.h explains the ordering with a device
// MemOps and a stream-ordered communicator); ring attention runs on host tensors only.
#pragma once
#include <span>

#include "core/tensor.h"
#include "ir/program.h"
#include "runtime/mem_ops.h"
#include "runtime/mesh.h"

namespace autosp::runtime {

bool is_communication(ir::Op op);
void run_communication(const Mesh& mesh, const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out,
                       MemOps& mem = host_mem_ops());

}  // namespace autosp::runtime
