// The API a model author writes against (ggml style): each call appends one node and
// returns its output; nothing is allocated or computed. A shape error in model code is a
// programming error and aborts naming the op and its operand types.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace autosp::ir {

class Builder {
 public:
  explicit Builder(Graph& g) : g_(g) {}
  Graph& graph() { return g_; }
  const TensorType& type(ValueId v) const { return g_.type(v); }
  const Shape& shape(ValueId v) const { return g_.type(v).shape; }
  DType dtype(ValueId v) const { return g_.type(v).dtype; }

  ValueId input(const std::string& name, DType dt, Shape shape);
  ValueId param(const std::string& name, Shape shape, Init init);
  void output(const std::string& name, ValueId v) { g_.add_output(name, v); }

  // Generic form used by everything below and by VJP rules.
  std::vector<ValueId> op(Op op, std::vector<ValueId> inputs, Attrs attrs = NoAttrs{});
  ValueId op1(Op o, std::vector<ValueId> inputs, Attrs attrs = NoAttrs{}) {
    return op(o, std::move(inputs), std::move(attrs))[0];
  }

  ValueId embedding(ValueId tokens, ValueId table) { return op1(Op::embedding, {tokens, table}); }
  ValueId matmul(ValueId a, ValueId b, bool trans_a = false, bool trans_b = false) {
    return op1(Op::matmul, {a, b}, MatmulAttrs{trans_a, trans_b});
  }
  // x · wᵀ with w in Hugging Face [out_features, in_features] layout.
  ValueId linear(ValueId x, ValueId w) { return matmul(x, w, false, true); }
  ValueId add(ValueId a, ValueId b) { return op1(Op::add, {a, b}); }
  ValueId sub(ValueId a, ValueId b) { return op1(Op::sub, {a, b}); }
  ValueId mul(ValueId a, ValueId b) { return op1(Op::mul, {a, b}); }
  ValueId div(ValueId a, ValueId b) { return op1(Op::div, {a, b}); }
  ValueId scale(ValueId x, float s) { return op1(Op::scale, {x}, ScaleAttrs{s}); }
  ValueId rms_norm(ValueId x, ValueId g, float eps) { return op1(Op::rms_norm, {x, g}, NormAttrs{eps}); }
  ValueId layer_norm(ValueId x, ValueId g, ValueId b, float eps) {
    return op1(Op::layer_norm, {x, g, b}, NormAttrs{eps});
  }
  ValueId rope(ValueId x, ValueId positions, float theta, bool inverse = false) {
    return op1(Op::rope, {x, positions}, RopeAttrs{theta, inverse});
  }
  ValueId silu(ValueId x) { return op1(Op::silu, {x}); }
  ValueId gelu(ValueId x) { return op1(Op::gelu, {x}); }
  ValueId swiglu(ValueId gate, ValueId up) { return op1(Op::swiglu, {gate, up}); }
  ValueId reshape(ValueId x, Shape s) { return op1(Op::reshape, {x}, ShapeAttrs{s.dims()}); }
  // x converted to dtype t; x itself when it already is t.
  ValueId cast(ValueId x, DType t) { return dtype(x) == t ? x : op1(Op::cast, {x}, CastAttrs{t}); }
  ValueId permute(ValueId x, std::vector<int64_t> perm) { return op1(Op::permute, {x}, PermuteAttrs{perm}); }

  struct AttentionOut { ValueId o, lse; };
  // q [B,T,H,D], k/v [B,T,Hkv,D]; segments [B,T] i32 restricts attention to one document.
  AttentionOut attention(ValueId q, ValueId k, ValueId v, std::optional<ValueId> segments, bool causal = true,
                         float scale = 0.0f);

  struct LossOut { ValueId sum, count, lse; };
  // Fused LM head + softmax cross-entropy: h [..., D], w [V, D], targets [...] i32.
  LossOut cross_entropy(ValueId h, ValueId w, ValueId targets, int64_t ignore_index = -1, int64_t chunk = 4096);

  ValueId sum(ValueId x, std::vector<int64_t> axes = {}) { return op1(Op::sum, {x}, ReduceAttrs{axes}); }
  ValueId mean(ValueId x, std::vector<int64_t> axes = {}) { return op1(Op::mean, {x}, ReduceAttrs{axes}); }
  ValueId broadcast(ValueId x, Shape shape, std::vector<int64_t> axes, float scale = 1.0f) {
    return op1(Op::broadcast, {x}, BroadcastAttrs{shape.dims(), axes, scale});
  }

 private:
  Graph& g_;
};

}  // namespace autosp::ir
