#include "runtime/collective_exec.h"

#include <cmath>

#include "kernels/cpu/cast.h"
#include "runtime/ring_attention.h"
#include "runtime/sp_collectives.h"

namespace autosp::runtime {

bool is_communication(ir::Op op) {
  return ir::is_collective(op) || ir::is_transfer(op) || op == ir::Op::ring_attention ||
         op == ir::Op::ring_attention_backward;
}

namespace {

Communicator& comm_for(const Mesh& mesh, ir::MeshGroup g, int64_t size) {
  Communicator& c = mesh.group(g);
  AUTOSP_CHECK(c.size() == size) << "program compiled for a " << ir::group_name(g) << " group of " << size
                                 << " ranks, but the mesh has " << c.size();
  return c;
}

RingAttentionArgs ring_args(const ir::RingAttentionAttrs& a, std::span<const Tensor> in, size_t idx_at) {
  const Shape& q = in[0].shape();
  RingAttentionArgs r;
  r.B = q[0];
  r.T = q[1];
  r.H = q[2];
  r.Hkv = in[1].shape()[2];
  r.D = q[3];
  r.causal = a.causal;
  r.scale = a.scale != 0.0f ? a.scale : float(1.0 / std::sqrt(double(r.D)));
  r.idx = in[idx_at].data<int32_t>();
  r.seg = in.size() > idx_at + 1 ? in[idx_at + 1].data<int32_t>() : nullptr;
  r.zigzag = a.zigzag;
  return r;
}

// Ring attention runs the f32 CPU kernels: a bf16 program's tensors go through f32 copies
// (rounded back on output, like the CPU backend's other bf16 ops).
Tensor f32_copy(const Tensor& t) {
  if (t.dtype() != DType::bf16) return t;
  Tensor f(Storage::host(t.nbytes() * 2), 0, DType::f32, t.shape());
  kernels::cpu::cast_bf16_to_f32(t.data<uint16_t>(), f.data<float>(), t.numel());
  return f;
}

}  // namespace

Communicator& ring_communicator(const Mesh& mesh, const ir::Instr& ins) {
  const auto& a = std::get<ir::RingAttentionAttrs>(ins.attrs);
  return comm_for(mesh, a.group, a.size);
}

RingAttentionArgs ring_attention_args(const ir::Instr& ins, std::span<const Tensor> in) {
  AUTOSP_CHECK(ins.op == ir::Op::ring_attention || ins.op == ir::Op::ring_attention_backward);
  return ring_args(std::get<ir::RingAttentionAttrs>(ins.attrs), in, ins.op == ir::Op::ring_attention ? 3 : 6);
}

void run_communication(const Mesh& mesh, const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out,
                       MemOps& mem) {
  AUTOSP_CHECK(!mem.device() || (ins.op != ir::Op::ring_attention && ins.op != ir::Op::ring_attention_backward))
      << ir::op_name(ins.op) << " runs on host tensors here (a device backend runs it: Backend::run_ring_attention)";
  if ((ins.op == ir::Op::ring_attention || ins.op == ir::Op::ring_attention_backward) &&
      in[0].dtype() == DType::bf16) {
    std::vector<Tensor> in32, out32;
    for (const Tensor& t : in) in32.push_back(f32_copy(t));
    for (const Tensor& t : out) out32.push_back(f32_copy(t));
    run_communication(mesh, ins, in32, out32);
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i].dtype() == DType::bf16)
        kernels::cpu::cast_f32_to_bf16(out32[i].data<float>(), out[i].data<uint16_t>(), out[i].numel());
    return;
  }
  const auto esize = int64_t(dtype_size(in[0].dtype()));
  switch (ins.op) {
    case ir::Op::all_to_all: {
      const auto& a = std::get<ir::AllToAllAttrs>(ins.attrs);
      all_to_all_tensor(comm_for(mesh, a.group, a.size), in[0].raw(), out[0].raw(), in[0].shape().dims(),
                        int(a.split), int(a.concat), esize, mem);
      return;
    }
    case ir::Op::all_gather: {
      const auto& a = std::get<ir::AxisCollectiveAttrs>(ins.attrs);
      Communicator& c = comm_for(mesh, a.group, a.size);
      const void* x = in[0].raw();
      if (in[0].dtype() != out[0].dtype()) {  // a cast folded into the gather (lower.cc): convert this rank's part
        AUTOSP_CHECK(in[0].dtype() == DType::f32 && out[0].dtype() == DType::bf16)
            << "all_gather converts only f32 to bf16, not " << dtype_name(in[0].dtype()) << " to "
            << dtype_name(out[0].dtype());
        void* part = mem.scratch(2, size_t(in[0].numel()) * dtype_size(DType::bf16));
        mem.f32_to_bf16(part, x, size_t(in[0].numel()));  // all_gather_tensor orders it before the communicator
        x = part;
      }
      all_gather_tensor(c, x, out[0].raw(), in[0].shape().dims(), int(a.axis), int64_t(dtype_size(out[0].dtype())),
                        mem);
      return;
    }
    case ir::Op::reduce_scatter: {
      const auto& a = std::get<ir::AxisCollectiveAttrs>(ins.attrs);
      reduce_scatter_tensor(comm_for(mesh, a.group, a.size), in[0].data<float>(), out[0].data<float>(),
                            in[0].shape().dims(), int(a.axis), mem);
      return;
    }
    case ir::Op::all_reduce: {
      const auto& a = std::get<ir::GroupAttrs>(ins.attrs);
      Communicator& c = comm_for(mesh, a.group, a.size);
      if (out[0].raw() != in[0].raw()) {
        mem.copy(out[0].raw(), in[0].raw(), in[0].nbytes());
        // A communicator that is not stream-ordered reads out[0] at once: the copy must have landed.
        if (!c.stream_ordered()) mem.synchronize();
      }
      c.all_reduce_sum(out[0].data<float>(), out[0].numel());
      return;
    }
    case ir::Op::send_recv: {
      const auto& a = std::get<ir::SendRecvAttrs>(ins.attrs);
      Communicator& c = comm_for(mesh, a.group, a.size);
      const int p = c.size(), r = c.rank();
      const int shift = int(((a.shift % p) + p) % p);
      c.send_recv(in[0].raw(), int64_t(in[0].nbytes()), (r + shift) % p, out[0].raw(), int64_t(out[0].nbytes()),
                  (r - shift + p) % p);
      return;
    }
    case ir::Op::ring_attention: {
      const auto& a = std::get<ir::RingAttentionAttrs>(ins.attrs);
      ring_attention_forward(comm_for(mesh, a.group, a.size), ring_args(a, in, 3), in[0].data<float>(),
                             in[1].data<float>(), in[2].data<float>(), out[0].data<float>(), out[1].data<float>());
      return;
    }
    case ir::Op::ring_attention_backward: {
      const auto& a = std::get<ir::RingAttentionAttrs>(ins.attrs);
      ring_attention_backward(comm_for(mesh, a.group, a.size), ring_args(a, in, 6), in[0].data<float>(),
                              in[1].data<float>(), in[2].data<float>(), in[3].data<float>(), in[4].data<float>(),
                              in[5].data<float>(), out[0].data<float>(), out[1].data<float>(),
                              out[2].data<float>());
      return;
    }
    default: break;
  }
  AUTOSP_CHECK(false) << ir::op_name(ins.op) << " is not a communication op";
}

}  // namespace autosp::runtime
