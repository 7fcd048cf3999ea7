// Runs the communication instructions of a Program (all_to_all, all_gather, reduce_scatter,
// all_reduce, send_recv, ring_attention and its backward) on the mesh's communicators.
#pragma once
#include <span>

#include "core/tensor.h"
#include "ir/program.h"
#include "runtime/mesh.h"

namespace autosp::runtime {

bool is_communication(ir::Op op);
void run_communication(const Mesh& mesh, const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out);

}  // namespace autosp::runtime
