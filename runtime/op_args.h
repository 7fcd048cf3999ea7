// Kernel arguments read off an instruction and its operands, shared by the backends: the CPU
// and CUDA kernels' argument structs have the same field names, so one template fills both.
#pragma once
#include <cmath>
#include <span>
#include <vector>

#include "core/tensor.h"
#include "ir/program.h"

namespace autosp::runtime {

// Attention inputs after the first `fixed` tensors are [segments] [index] (ir/ops_attention.cc).
template <class Args>
Args attention_args(const ir::Instr& ins, std::span<const Tensor> in, size_t fixed) {
  const auto& a = std::get<ir::AttentionAttrs>(ins.attrs);
  const Shape& q = in[0].shape();
  const Shape& kv = in[1].shape();
  Args r;
  r.B = q[0];
  r.Tq = q[1];
  r.Tk = kv[1];
  r.H = q[2];
  r.Hkv = kv[2];
  r.D = q[3];
  r.causal = a.causal;
  r.scale = a.scale != 0.0f ? a.scale : float(1.0 / std::sqrt(double(r.D)));
  if (in.size() - fixed - size_t(a.indexed) == 1) r.q_seg = r.k_seg = in[fixed].data<int32_t>();
  if (a.indexed) r.q_pos = r.k_pos = in[in.size() - 1].data<int32_t>();
  return r;
}

// The fused cross-entropy's sizes: hidden states h [..., D], head w [V, D].
template <class Args>
Args cross_entropy_args(const ir::Instr& ins, const Shape& h, const Shape& w) {
  const auto& a = std::get<ir::CrossEntropyAttrs>(ins.attrs);
  Args r;
  r.N = h.numel() / h[-1];
  r.D = h[-1];
  r.V = w[0];
  r.ignore_index = int32_t(a.ignore_index);
  r.chunk = a.chunk;
  return r;
}

// reduce[d] for a reduction over `axes` (empty: all of them).
inline std::vector<bool> axis_mask(const std::vector<int64_t>& axes, int rank) {
  std::vector<bool> m(size_t(rank), axes.empty());
  for (int64_t a : axes) m[size_t(a)] = true;
  return m;
}

// The data pointers of a list of operands, and their extents along one axis (split, concat).
inline std::vector<void*> data_pointers(std::span<Tensor> ts) {
  std::vector<void*> p;
  for (Tensor& t : ts) p.push_back(t.raw());
  return p;
}
inline std::vector<const void*> data_pointers(std::span<const Tensor> ts) {
  std::vector<const void*> p;
  for (const Tensor& t : ts) p.push_back(t.raw());
  return p;
}
inline std::vector<int64_t> extents(std::span<const Tensor> ts, int axis) {
  std::vector<int64_t> e;
  for (const Tensor& t : ts) e.push_back(t.shape()[axis]);
  return e;
}

// Rows of a tensor normalised over its last axis.
inline int64_t rows_of(const Shape& s) { return s.numel() / s[-1]; }

}  // namespace autosp::runtime
