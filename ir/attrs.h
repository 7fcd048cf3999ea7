// Typed attribute structs, one per op family. Each exposes its fields through
// `fields(f)`, calling f(name, member) in a fixed order; the printer, parser and verifier are
// written once against that instead of per op. Field types: bool, int64_t, float,
// std::vector<int64_t>.
#pragma once
#include <cstdint>
#include <variant>
#include <vector>

namespace autosp::ir {

struct NoAttrs {
  template <class F> void fields(F&&) {}
};
// matmul: C = op(A) op(B); B may be a single matrix shared by A's batch (a weight).
struct MatmulAttrs {
  bool trans_a = false, trans_b = false;
  template <class F> void fields(F&& f) { f("trans_a", trans_a); f("trans_b", trans_b); }
};
struct ScaleAttrs {
  float scale = 1.0f;
  template <class F> void fields(F&& f) { f("scale", scale); }
};
// rms_norm, layer_norm and their backward ops.
struct NormAttrs {
  float eps = 1e-5f;
  template <class F> void fields(F&& f) { f("eps", eps); }
};
struct RopeAttrs {
  float theta = 10000.0f;
  bool inverse = false;  // rotate by -angle: the VJP of rope
  template <class F> void fields(F&& f) { f("theta", theta); f("inverse", inverse); }
};
// reshape: the output shape.
struct ShapeAttrs {
  std::vector<int64_t> shape;
  template <class F> void fields(F&& f) { f("shape", shape); }
};
struct PermuteAttrs {
  std::vector<int64_t> perm;  // output axis i is input axis perm[i]
  template <class F> void fields(F&& f) { f("perm", perm); }
};
// attention and attention_backward. A fourth input, when present, is the segment ids.
struct AttentionAttrs {
  bool causal = true;
  float scale = 0.0f;  // softmax scale; 0 means 1/sqrt(head_dim)
  template <class F> void fields(F&& f) { f("causal", causal); f("scale", scale); }
};
struct CrossEntropyAttrs {
  int64_t ignore_index = -1;
  int64_t chunk = 4096;  // vocabulary columns per block
  template <class F> void fields(F&& f) { f("ignore_index", ignore_index); f("chunk", chunk); }
};
// sum / mean over `axes` (empty = all, giving a scalar); broadcast is their adjoint:
// it re-inserts `axes` so the result has `shape`.
struct ReduceAttrs {
  std::vector<int64_t> axes;
  template <class F> void fields(F&& f) { f("axes", axes); }
};
struct BroadcastAttrs {
  std::vector<int64_t> shape;
  std::vector<int64_t> axes;
  float scale = 1.0f;  // mean's VJP folds 1/count in here
  template <class F> void fields(F&& f) { f("shape", shape); f("axes", axes); f("scale", scale); }
};
struct EmbeddingBackwardAttrs {
  int64_t vocab = 0;
  template <class F> void fields(F&& f) { f("vocab", vocab); }
};

using Attrs = std::variant<NoAttrs, MatmulAttrs, ScaleAttrs, NormAttrs, RopeAttrs, ShapeAttrs, PermuteAttrs,
                           AttentionAttrs, CrossEntropyAttrs, ReduceAttrs, BroadcastAttrs,
                           EmbeddingBackwardAttrs>;

}  // namespace autosp::ir
