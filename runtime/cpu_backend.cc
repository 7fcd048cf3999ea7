// CPU backend: maps each instruction to the fp32 kernels in kernels/cpu. The only logic here
// is reading sizes out of the slot shapes and attributes.
//
// bf16 programs run too, for testing what a GPU will run: a compute op on bf16 tensors reads
// them into f32 copies, runs the f32 kernel, and rounds its outputs back to bf16 (what a
// bf16 kernel with fp32 arithmetic does). Data movement is dtype-agnostic and runs as is.
#include <cmath>
#include <cstring>

#include "ir/registry.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cast.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/layout.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/reduce.h"
#include "kernels/cpu/rope.h"
#include "runtime/backend.h"
#include "runtime/op_args.h"

namespace autosp::runtime {

namespace {

namespace k = kernels::cpu;
using ir::Op;

const float* F(const Tensor& t) { return t.data<float>(); }
float* F(Tensor& t) { return t.data<float>(); }
const int32_t* I(const Tensor& t) { return t.data<int32_t>(); }

k::CrossEntropyArgs ce_args(const ir::Instr& ins, std::span<const Tensor> in) {
  return cross_entropy_args<k::CrossEntropyArgs>(ins, in[0].shape(), in[1].shape());
}

void binary(k::BinaryOp op, std::span<const Tensor> in, std::span<Tensor> out) {
  k::binary(op, F(in[0]), F(in[1]), F(out[0]), in[0].numel(), in[1].numel());
}

bool moves_bytes_only(Op op) {
  return op == Op::reshape || op == Op::permute || op == Op::pack || op == Op::unpack || op == Op::split ||
         op == Op::concat;
}

Tensor as_f32(const Tensor& t) {
  if (t.dtype() != DType::bf16) return t;
  Tensor f(Storage::host(size_t(t.numel()) * 4), 0, DType::f32, t.shape());
  k::cast_bf16_to_f32(t.data<uint16_t>(), F(f), t.numel());
  return f;
}

void cast(const Tensor& x, Tensor& y) {
  if (x.dtype() == y.dtype())
    std::memcpy(y.raw(), x.raw(), x.nbytes());
  else if (x.dtype() == DType::f32)
    k::cast_f32_to_bf16(F(x), y.data<uint16_t>(), x.numel());
  else
    k::cast_bf16_to_f32(x.data<uint16_t>(), F(y), x.numel());
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  std::shared_ptr<Storage> allocate(size_t bytes) override { return Storage::host(bytes); }

  double sum_squares(std::span<const Tensor> xs) override {
    double s = 0;
    for (const Tensor& x : xs) s += k::sum_squares(F(x), x.numel());
    return s;
  }
  void adamw(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamWStep& a) override {
    k::adamw_step(F(p), F(g), F(m), F(v), p.numel(), a.lr, a.beta1, a.beta2, a.eps, a.weight_decay, a.step,
                  a.grad_scale);
  }

  void launch(const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out) override {
    if (ins.op == Op::cast) return cast(in[0], out[0]);
    if (!moves_bytes_only(ins.op) && has_bf16(in, out)) return launch_in_f32(ins, in, out);
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
        // An accumulated X (fuse_accumulate) is BLAS's C with beta = 1; in a bf16 program X and
        // out are f32 copies here, so the sum is rounded once, as a bf16 cuBLASLt epilogue does.
        const bool acc = in.size() == 3;
        if (acc && in[2].raw() != out[0].raw()) std::memcpy(out[0].raw(), in[2].raw(), out[0].nbytes());
        k::matmul(F(in[0]), F(in[1]), F(out[0]), batch, m, n, kk, a.trans_a, a.trans_b, sb.rank() == 2, 1.0f,
                  acc ? 1.0f : 0.0f);
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
        k::rms_norm_forward(F(in[0]), F(in[1]), F(out[0]), rows_of(in[0].shape()), in[0].shape()[-1],
                            std::get<ir::NormAttrs>(ins.attrs).eps);
        return;
      case Op::rms_norm_backward:
        k::rms_norm_backward(F(in[0]), F(in[1]), F(in[2]), F(out[0]), F(out[1]), rows_of(in[0].shape()),
                             in[0].shape()[-1], std::get<ir::NormAttrs>(ins.attrs).eps);
        return;
      case Op::layer_norm:
        k::layer_norm_forward(F(in[0]), F(in[1]), F(in[2]), F(out[0]), rows_of(in[0].shape()),
                              in[0].shape()[-1], std::get<ir::NormAttrs>(ins.attrs).eps);
        return;
      case Op::layer_norm_backward:
        k::layer_norm_backward(F(in[0]), F(in[1]), F(in[2]), F(out[0]), F(out[1]), F(out[2]),
                               rows_of(in[0].shape()), in[0].shape()[-1],
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
        k::attention_forward(attention_args<k::AttentionArgs>(ins, in, 3), F(in[0]), F(in[1]), F(in[2]), F(out[0]),
                             F(out[1]));
        return;
      case Op::attention_backward:
        k::attention_backward(attention_args<k::AttentionArgs>(ins, in, 6), F(in[0]), F(in[1]), F(in[2]), F(in[3]),
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
      case Op::offload:
      case Op::fetch:
        break;  // communication: the executor runs these with its communicators (transfers by copy)
      case Op::pack: {  // concatenate (a part written in place is skipped: lower.cc), then zero the padding
        char* dst = static_cast<char*>(out[0].raw());
        for (const Tensor& t : in) {
          if (t.raw() != dst) std::memcpy(dst, t.raw(), t.nbytes());
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
        const auto& a = std::get<ir::SplitAttrs>(ins.attrs);
        k::split(in[0].raw(), data_pointers(out), in[0].shape().dims(), int(a.axis), a.sizes,
                 int64_t(dtype_size(in[0].dtype())));
        return;
      }
      case Op::concat: {
        const int axis = int(std::get<ir::ConcatAttrs>(ins.attrs).axis);
        k::concat(data_pointers(in), out[0].raw(), out[0].shape().dims(), axis, extents(in, axis),
                  int64_t(dtype_size(out[0].dtype())));
        return;
      }
      case Op::broadcast: {
        const auto& a = std::get<ir::BroadcastAttrs>(ins.attrs);
        k::broadcast(F(in[0]), F(out[0]), a.shape, axis_mask(a.axes, int(a.shape.size())), a.scale);
        return;
      }
      case Op::cast: break;  // handled above
    }
    AUTOSP_CHECK(false) << "cpu backend: no kernel for " << ir::op_name(ins.op);
  }

 private:
  static bool has_bf16(std::span<const Tensor> in, std::span<Tensor> out) {
    for (const Tensor& t : in)
      if (t.dtype() == DType::bf16) return true;
    for (const Tensor& t : out)
      if (t.dtype() == DType::bf16) return true;
    return false;
  }

  void launch_in_f32(const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out) {
    std::vector<Tensor> in32, out32;
    for (const Tensor& t : in) in32.push_back(as_f32(t));
    for (Tensor& t : out)
      out32.push_back(t.dtype() == DType::bf16 ? Tensor(Storage::host(size_t(t.numel()) * 4), 0, DType::f32, t.shape())
                                               : t);
    launch(ins, in32, out32);
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i].dtype() == DType::bf16) cast(out32[i], out[i]);
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace autosp::runtime
