// Typed attribute structs, one per op family. Each exposes its fields through
// `fields(f)`, calling f(name, member) in a fixed order; the printer, parser and verifier are
// written once against that instead of per op. Field types: bool, int64_t, float,
// std::vector<int64_t>, MeshGroup, DType.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"

namespace autosp::ir {

// The communicator a collective runs on. world = dp × sp ranks; sp groups are consecutive
// ranks; in a hybrid layout sp_inner is the Ulysses sub-group (consecutive ranks) and
// sp_outer the ring across sub-groups; dp links the ranks holding the same sequence shard.
enum class MeshGroup : uint8_t { world, sp, sp_inner, sp_outer, dp };
std::string_view group_name(MeshGroup g);
std::optional<MeshGroup> group_from_name(std::string_view name);

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
// attention and attention_backward. Optional trailing inputs: segment ids [B, T] (documents),
// then, when `indexed`, the global index [B, T] of each token: causality compares indices
// instead of row numbers (a sequence-parallel layout such as zigzag is not in sequence order).
struct AttentionAttrs {
  bool causal = true;
  float scale = 0.0f;  // softmax scale; 0 means 1/sqrt(head_dim)
  bool indexed = false;
  template <class F> void fields(F&& f) { f("causal", causal); f("scale", scale); f("indexed", indexed); }
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
// cast: the element type of the result (f32 <-> bf16). Mixed-precision models keep f32
// parameters and cast them at their use, so gradients come back to f32 through cast's VJP.
struct CastAttrs {
  DType dtype = DType::bf16;
  template <class F> void fields(F&& f) { f("dtype", dtype); }
};
struct EmbeddingBackwardAttrs {
  int64_t vocab = 0;
  template <class F> void fields(F&& f) { f("vocab", vocab); }
};

// Collectives. `size` is the group's rank count, fixed at compile time (shape inference
// needs it). all_to_all cuts axis `split` into size pieces (piece j to rank j) and
// concatenates what it receives along `concat`; all_gather concatenates along `axis`;
// reduce_scatter sums and keeps this rank's piece of `axis`; send_recv sends to rank+shift
// and receives from rank-shift.
struct AllToAllAttrs {
  MeshGroup group = MeshGroup::sp;
  int64_t size = 1, split = 0, concat = 0;
  template <class F> void fields(F&& f) { f("group", group); f("size", size); f("split", split); f("concat", concat); }
};
struct AxisCollectiveAttrs {
  MeshGroup group = MeshGroup::sp;
  int64_t size = 1, axis = 0;
  template <class F> void fields(F&& f) { f("group", group); f("size", size); f("axis", axis); }
};
struct GroupAttrs {
  MeshGroup group = MeshGroup::world;
  int64_t size = 1;
  template <class F> void fields(F&& f) { f("group", group); f("size", size); }
};
struct SendRecvAttrs {
  MeshGroup group = MeshGroup::sp;
  int64_t size = 1, shift = 1;
  template <class F> void fields(F&& f) { f("group", group); f("size", size); f("shift", shift); }
};
// ring_attention(q, k, v, idx [, segments]) over `group`: K/V blocks travel the ring.
// zigzag: idx is, in every batch row, the zigzag layout's positions of this rank of the ring
// (runtime/ring_attention.h zigzag_indices), so which local queries see which keys of a
// visiting block is known on the host and a device runs each block as one plain causal or
// full attention (the CPU ring checks the claim against idx).
struct RingAttentionAttrs {
  MeshGroup group = MeshGroup::sp;
  int64_t size = 1;
  bool causal = true;
  float scale = 0.0f;
  bool zigzag = false;
  template <class F> void fields(F&& f) {
    f("group", group); f("size", size); f("causal", causal); f("scale", scale); f("zigzag", zigzag);
  }
};

// pack(x1, ..., xn) concatenates its inputs, flattened, into one [padded] buffer (zeros
// after the last); unpack(flat) is the inverse: one output per shape, encoded as
// [rank, dims..., rank, dims..., ...]. ZeRO buckets use them (sp_compiler/zero_shard.cc).
struct PackAttrs {
  int64_t padded = 0;
  template <class F> void fields(F&& f) { f("padded", padded); }
};
struct UnpackAttrs {
  std::vector<int64_t> shapes;
  template <class F> void fields(F&& f) { f("shapes", shapes); }
};

// split(x) cuts `axis` into parts of extents `sizes`; concat(x1, ...) joins along `axis`.
struct SplitAttrs {
  int64_t axis = 0;
  std::vector<int64_t> sizes;
  template <class F> void fields(F&& f) { f("axis", axis); f("sizes", sizes); }
};
struct ConcatAttrs {
  int64_t axis = 0;
  template <class F> void fields(F&& f) { f("axis", axis); }
};

using Attrs = std::variant<NoAttrs, MatmulAttrs, ScaleAttrs, NormAttrs, RopeAttrs, ShapeAttrs, PermuteAttrs,
                           AttentionAttrs, CrossEntropyAttrs, ReduceAttrs, BroadcastAttrs,
                           EmbeddingBackwardAttrs, AllToAllAttrs, AxisCollectiveAttrs, GroupAttrs, SendRecvAttrs,
                           RingAttentionAttrs, PackAttrs, UnpackAttrs, SplitAttrs, ConcatAttrs, CastAttrs>;

// unpack's shape list encoding (ir/ops_bucket.cc).
std::vector<int64_t> encode_shapes(const std::vector<Shape>& shapes);

}  // namespace autosp::ir
