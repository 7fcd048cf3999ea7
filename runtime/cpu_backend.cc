// CPU backend: maps each instruction to the fp32 kernels in kernels/cpu. The only logic here
// is reading sizes out of the slot shapes and attributes.
#include <cmath>
#include <cstring>

#include "ir/registry.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/layout.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/reduce.h"
#include "kernels/cpu/rope.h"
#include "runtime/backend.h"

namespace autosp::runtime {

namespace {

namespace k = kernels::cpu;
using ir::Op;

const float* F(const Tensor& t) { return t.data<float>(); }
float* F(Tensor& t) { return t.data<float>(); }
const int32_t* I(const Tensor& t) { return t.data<int32_t>(); }

std::vector<bool> axis_mask(const std::vector<int64_t>& axes, int rank) {
  std::vector<bool> m(rank, axes.empty());
  for (int64_t a : axes) m[a] = true;
  return m;
}

// Attention inputs after the first `fixed` tensors are [segments] [index] (ir/ops_attention.cc).
k::AttentionArgs attention_args(const ir::Instr& ins, std::span<const Tensor> in, size_t fixed) {
  const auto& a = std::get<ir::AttentionAttrs>(ins.attrs);
  const Shape& q = in[0].shape();
  const Shape& kv = in[1].shape();
  k::AttentionArgs r;
  r.B = q[0];
  r.Tq = q[1];
  r.Tk = kv[1];
  r.H = q[2];
  r.Hkv = kv[2];
  r.D = q[3];
  r.causal = a.causal;
  r.scale = a.scale != 0.0f ? a.scale : float(1.0 / std::sqrt(double(r.D)));
  if (in.size() - fixed - size_t(a.indexed) == 1) r.q_seg = r.k_seg = I(in[fixed]);
  if (a.indexed) r.q_pos = r.k_pos = I(in[in.size() - 1]);
  return r;
}

k::CrossEntropyArgs ce_args(const ir::Instr& ins, std::span<const Tensor> in) {
  const auto& a = std::get<ir::CrossEntropyAttrs>(ins.attrs);
  return {in[2].numel(), in[0].shape()[-1], in[1].shape()[0], int32_t(a.ignore_index), a.chunk};
}

void binary(k::BinaryOp op, std::span<const Tensor> in, std::span<Tensor> out) {
  k::binary(op, F(in[0]), F(in[1]), F(out[0]), in[0].numel(), in[1].numel());
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  std::shared_ptr<Storage> allocate(size_t bytes) override { return Storage::host(bytes); }

  void launch(const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out) override {
    switch (ins.op) {
      case Op::embedding:
        k::embedding_forward(I(in[0]), F(in[1]), F(out[0]), in[0].numel(), in[1].shape()[1]);
        return;
      case Op::embedding_backward:
        k::embedding_backward(I(in[0]), F(in[1]), F(out[0]), in[0].numel(), out[0].shape()[0], out[0].shape()[1]);
        return;
      case Op::matmul: {
        const auto& a = std::get<ir::MatmulAttrs>(ins.attrs);
        const Shape& sa = in[0].shape();
        const Shape& sb = in[1].shape();
        const int64_t m = out[0].shape()[-2], n = out[0].shape()[-1];
        const int64_t kk = a.trans_a ? sa[-2] : sa[-1];
        const int64_t batch = out[0].numel() / (m * n);
        k::matmul(F(in[0]), F(in[1]), F(out[0]), batch, m, n, kk, a.trans_a, a.trans_b, sb.rank() == 2);
        return;
      }
      case Op::add: return binary(k::BinaryOp::add, in, out);
      case Op::sub: return binary(k::BinaryOp::sub, in, out);
      case Op::mul: return binary(k::BinaryOp::mul, in, out);
      case Op::div: return binary(k::BinaryOp::div, in, out);
      case Op::scale:
        k::scale(F(in[0]), F(out[0]), in[0].numel(), std::get<ir::ScaleAttrs>(ins.attrs).scale);
        return;
      case Op::rms_norm:
        k::rms_norm_forward(F(in[0]), F(in[1]), F(out[0]), in[0].numel() / in[0].shape()[-1], in[0].shape()[-1],
                            std::get<ir::NormAttrs>(ins.attrs).eps);
        return;
      case Op::rms_norm_backward:
        k::rms_norm_backward(F(in[0]), F(in[1]), F(in[2]), F(out[0]), F(out[1]), in[0].numel() / in[0].shape()[-1],
                             in[0].shape()[-1], std::get<ir::NormAttrs>(ins.attrs).eps);
        return;
      case Op::layer_norm:
        k::layer_norm_forward(F(in[0]), F(in[1]), F(in[2]), F(out[0]), in[0].numel() / in[0].shape()[-1],
                              in[0].shape()[-1], std::get<ir::NormAttrs>(ins.attrs).eps);
        return;
      case Op::layer_norm_backward:
        k::layer_norm_backward(F(in[0]), F(in[1]), F(in[2]), F(out[0]), F(out[1]), F(out[2]),
                               in[0].numel() / in[0].shape()[-1], in[0].shape()[-1],
                               std::get<ir::NormAttrs>(ins.attrs).eps);
        return;
      case Op::rope: {
        const auto& a = std::get<ir::RopeAttrs>(ins.attrs);
        const Shape& s = in[0].shape();
        k::rope(F(in[0]), I(in[1]), F(out[0]), s[0], s[1], s[2], s[3], a.theta, a.inverse);
        return;
      }
      case Op::silu: k::silu_forward(F(in[0]), F(out[0]), in[0].numel()); return;
      case Op::silu_backward: k::silu_backward(F(in[0]), F(in[1]), F(out[0]), in[0].numel()); return;
      case Op::gelu: k::gelu_forward(F(in[0]), F(out[0]), in[0].numel()); return;
      case Op::gelu_backward: k::gelu_backward(F(in[0]), F(in[1]), F(out[0]), in[0].numel()); return;
      case Op::swiglu: k::swiglu_forward(F(in[0]), F(in[1]), F(out[0]), in[0].numel()); return;
      case Op::swiglu_backward:
        k::swiglu_backward(F(in[0]), F(in[1]), F(in[2]), F(out[0]), F(out[1]), in[0].numel());
        return;
      case Op::reshape:  // only reaches here when the result must be a copy (see lower)
        if (out[0].raw() != in[0].raw()) std::memcpy(out[0].raw(), in[0].raw(), in[0].nbytes());
        return;
      case Op::permute: {
        const auto& perm64 = std::get<ir::PermuteAttrs>(ins.attrs).perm;
        std::vector<int> perm(perm64.begin(), perm64.end());
        k::permute(F(in[0]), F(out[0]), in[0].shape().dims(), perm, int64_t(dtype_size(in[0].dtype())));
        return;
      }
      case Op::attention:
        k::attention_forward(attention_args(ins, in, 3), F(in[0]), F(in[1]), F(in[2]), F(out[0]),
                             F(out[1]));
        return;
      case Op::attention_backward:
        k::attention_backward(attention_args(ins, in, 6), F(in[0]), F(in[1]), F(in[2]), F(in[3]),
                              F(in[4]), F(in[5]), F(out[0]), F(out[1]), F(out[2]));
        return;
      case Op::cross_entropy:
        k::cross_entropy_forward(ce_args(ins, in), F(in[0]), F(in[1]), I(in[2]), F(out[0]), F(out[1]), F(out[2]));
        return;
      case Op::cross_entropy_backward:
        k::cross_entropy_backward(ce_args(ins, in), F(in[0]), F(in[1]), I(in[2]), F(in[3]), *F(in[4]), F(out[0]),
                                  F(out[1]));
        return;
      case Op::sum:
      case Op::mean: {
        const Shape& s = in[0].shape();
        const auto mask = axis_mask(std::get<ir::ReduceAttrs>(ins.attrs).axes, s.rank());
        const float sc = ins.op == Op::mean ? float(double(out[0].numel()) / double(in[0].numel())) : 1.0f;
        k::reduce_sum(F(in[0]), F(out[0]), s.dims(), mask, sc);
        return;
      }
      case Op::all_to_all:
      case Op::all_gather:
      case Op::reduce_scatter:
      case Op::all_reduce:
      case Op::send_recv:
      case Op::ring_attention:
      case Op::ring_attention_backward:
        break;  // communication: the executor runs these with its communicators
      case Op::pack: {  // concatenate, then zero the padding
        char* dst = static_cast<char*>(out[0].raw());
        for (const Tensor& t : in) {
          std::memcpy(dst, t.raw(), t.nbytes());
          dst += t.nbytes();
        }
        std::memset(dst, 0, size_t(static_cast<char*>(out[0].raw()) + out[0].nbytes() - dst));
        return;
      }
      case Op::unpack: {  // only reaches here when a part must be a copy (see lower)
        const char* src = static_cast<const char*>(in[0].raw());
        for (Tensor& t : out) {
          std::memcpy(t.raw(), src, t.nbytes());
          src += t.nbytes();
        }
        return;
      }
      case Op::split: {
        std::vector<void*> parts;
        for (Tensor& t : out) parts.push_back(t.raw());
        k::split(in[0].raw(), parts, in[0].shape().dims(), int(std::get<ir::SplitAttrs>(ins.attrs).axis),
                 std::get<ir::SplitAttrs>(ins.attrs).sizes, int64_t(dtype_size(in[0].dtype())));
        return;
      }
      case Op::concat: {
        const int axis = int(std::get<ir::ConcatAttrs>(ins.attrs).axis);
        std::vector<const void*> parts;
        std::vector<int64_t> sizes;
        for (const Tensor& t : in) {
          parts.push_back(t.raw());
          sizes.push_back(t.shape()[axis]);
        }
        k::concat(parts, out[0].raw(), out[0].shape().dims(), axis, sizes, int64_t(dtype_size(out[0].dtype())));
        return;
      }
      case Op::broadcast: {
        const auto& a = std::get<ir::BroadcastAttrs>(ins.attrs);
        k::broadcast(F(in[0]), F(out[0]), a.shape, axis_mask(a.axes, int(a.shape.size())), a.scale);
        return;
      }
    }
    AUTOSP_CHECK(false) << "cpu backend: no kernel for " << ir::op_name(ins.op);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace autosp::runtime
