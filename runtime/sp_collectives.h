// Tensor-shaped collectives for the sequence-parallel program: the Communicator moves flat
// byte chunks in rank order, these cut and paste row-major tensors along an axis around it.
//
// Tensors are contiguous row-major buffers given as a pointer plus dims; elem_bytes is the
// element size (data movement is dtype-agnostic; the reduction is fp32 only). Every rank
// passes the same dims and axes. When the axis being cut or pasted is the outermost non-unit
// one, the chunks are already contiguous and the data goes straight to or from the
// Communicator; otherwise it is packed into / unpacked from mem's scratch buffers 0 (send)
// and 1 (receive) with one strided copy (copy2d) per chunk.
//
// Buffers live where mem says: host memory with host_mem_ops(), device memory with a device
// MemOps. Ordering: with a stream-ordered communicator (NCCL), mem must copy on the
// communicator's stream; packing, the collective and unpacking are then enqueued in that
// order and the call returns before they run. With any other communicator, everything issued
// on mem before the communicator call (the packing, the previous call's unpacking) is
// completed first (mem.synchronize()), the communicator is done on return, and the
// unpacking has been issued on mem (complete with a synchronous mem).
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/comm.h"
#include "runtime/mem_ops.h"

namespace autosp::runtime {

// x has dims; axis split_axis (extent divisible by P = c.size()) is cut into P equal chunks
// and chunk j goes to rank j; the P chunks received are concatenated along concat_axis in
// rank order. out has dims with dims[split_axis] /= P, then dims[concat_axis] *= P.
// Ulysses: [B, T/P, H, D] split 2, concat 1 -> [B, T, H/P, D]; and back with split 1, concat 2.
void all_to_all_tensor(Communicator& c, const void* x, void* out, const std::vector<int64_t>& dims,
                       int split_axis, int concat_axis, int64_t elem_bytes, MemOps& mem = host_mem_ops());

// out has dims with dims[axis] *= P: every rank's x, in rank order along axis.
void all_gather_tensor(Communicator& c, const void* x, void* out, const std::vector<int64_t>& dims, int axis,
                       int64_t elem_bytes, MemOps& mem = host_mem_ops());

// out has dims with dims[axis] /= P (dims[axis] divisible by P): piece rank() along axis of
// the sum over ranks of x.
void reduce_scatter_tensor(Communicator& c, const float* x, float* out, const std::vector<int64_t>& dims,
                           int axis, MemOps& mem = host_mem_ops());

}  // namespace autosp::runtime
