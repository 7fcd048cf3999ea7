// Tensor collectives (sp_collectives.h). All three reduce to one picture: a tensor seen as
// [outer, P·m, inner] along an axis holds P chunks [outer, m, inner], and the Communicator
// wants them as P consecutive row-major pieces. Chunk j is outer rows of m·inner bytes, one
// every P·m·inner bytes: one copy2d each way (pack_chunks / unpack_chunks), P per call,
// whatever outer is; when outer == 1 the layouts coincide and the copy is skipped.
#include "runtime/sp_collectives.h"

#include <cstddef>

#include "core/check.h"

namespace autosp::runtime {
namespace {

// dims around one axis, in bytes: [outer, extent, inner_bytes].
struct AxisView {
  int64_t outer = 1, extent = 1, inner_bytes = 1;
};

AxisView view_at(const std::vector<int64_t>& dims, int axis, int64_t elem_bytes) {
  AUTOSP_CHECK(axis >= 0 && axis < static_cast<int>(dims.size()))
      << "axis " << axis << " out of range for a " << dims.size() << "-d tensor";
  AxisView v;
  v.inner_bytes = elem_bytes;
  for (int i = 0; i < static_cast<int>(dims.size()); ++i) {
    AUTOSP_CHECK(dims[i] >= 0) << "negative dimension " << dims[i];
    if (i < axis) v.outer *= dims[i];
    if (i > axis) v.inner_bytes *= dims[i];
  }
  v.extent = dims[axis];
  return v;
}

int64_t total_bytes(const AxisView& v) { return v.outer * v.extent * v.inner_bytes; }

// dst (P consecutive chunks) := src ([outer, P·m, inner]) cut along the axis.
void pack_chunks(MemOps& mem, const std::byte* src, std::byte* dst, const AxisView& v, int P) {
  const int64_t run = v.extent / P * v.inner_bytes, chunk = v.outer * run, pitch = v.extent * v.inner_bytes;
  for (int j = 0; j < P; ++j)
    mem.copy2d(dst + j * chunk, size_t(run), src + j * run, size_t(pitch), size_t(run), size_t(v.outer));
}

// The inverse: dst ([outer, P·m, inner]) := src (P consecutive chunks) pasted along the axis.
void unpack_chunks(MemOps& mem, const std::byte* src, std::byte* dst, const AxisView& v, int P) {
  const int64_t run = v.extent / P * v.inner_bytes, chunk = v.outer * run, pitch = v.extent * v.inner_bytes;
  for (int j = 0; j < P; ++j)
    mem.copy2d(dst + j * run, size_t(pitch), src + j * chunk, size_t(run), size_t(run), size_t(v.outer));
}

// A communicator that is not stream-ordered touches the buffers as soon as it is called: what
// mem packed must have landed, and the previous call's unpacking (still reading the receive
// scratch, with a stream-ordered mem) must be over. A stream-ordered one runs after both on
// the same stream.
void before_communicator(const Communicator& c, MemOps& mem) {
  if (!c.stream_ordered()) mem.synchronize();
}

const std::byte* bytes(const void* p) { return static_cast<const std::byte*>(p); }
std::byte* bytes(void* p) { return static_cast<std::byte*>(p); }

}  // namespace

void all_to_all_tensor(Communicator& c, const void* x, void* out, const std::vector<int64_t>& dims,
                       int split_axis, int concat_axis, int64_t elem_bytes, MemOps& mem) {
  const int P = c.size();
  const AxisView in = view_at(dims, split_axis, elem_bytes);
  AUTOSP_CHECK(in.extent % P == 0) << "all_to_all_tensor: split axis " << split_axis << " has extent "
                                   << in.extent << ", not divisible by " << P << " ranks";
  view_at(dims, concat_axis, elem_bytes);  // validates concat_axis before it indexes dims
  std::vector<int64_t> out_dims = dims;
  out_dims[split_axis] /= P;
  out_dims[concat_axis] *= P;
  const AxisView res = view_at(out_dims, concat_axis, elem_bytes);
  const int64_t n = total_bytes(in);
  if (n == 0) return;
  const std::byte* send = bytes(x);
  if (in.outer > 1) {
    auto* packed = bytes(mem.scratch(0, size_t(n)));
    pack_chunks(mem, bytes(x), packed, in, P);
    send = packed;
  }
  std::byte* recv = res.outer > 1 ? bytes(mem.scratch(1, size_t(n))) : bytes(out);
  before_communicator(c, mem);
  c.all_to_all(send, recv, n / P);
  if (res.outer > 1) unpack_chunks(mem, recv, bytes(out), res, P);
}

void all_gather_tensor(Communicator& c, const void* x, void* out, const std::vector<int64_t>& dims, int axis,
                       int64_t elem_bytes, MemOps& mem) {
  const int P = c.size();
  view_at(dims, axis, elem_bytes);  // validates axis before it indexes dims
  std::vector<int64_t> out_dims = dims;
  out_dims[axis] *= P;
  const AxisView res = view_at(out_dims, axis, elem_bytes);
  const int64_t n = total_bytes(res);
  if (n == 0) return;
  std::byte* recv = res.outer > 1 ? bytes(mem.scratch(1, size_t(n))) : bytes(out);
  before_communicator(c, mem);
  c.all_gather(x, recv, n / P);
  if (res.outer > 1) unpack_chunks(mem, recv, bytes(out), res, P);
}

void reduce_scatter_tensor(Communicator& c, const float* x, float* out, const std::vector<int64_t>& dims,
                           int axis, MemOps& mem) {
  const int P = c.size();
  const AxisView in = view_at(dims, axis, sizeof(float));
  AUTOSP_CHECK(in.extent % P == 0) << "reduce_scatter_tensor: axis " << axis << " has extent " << in.extent
                                   << ", not divisible by " << P << " ranks";
  const int64_t n = total_bytes(in);
  if (n == 0) return;
  const std::byte* send = bytes(x);
  if (in.outer > 1) {
    auto* packed = bytes(mem.scratch(0, size_t(n)));
    pack_chunks(mem, bytes(x), packed, in, P);
    send = packed;
  }
  before_communicator(c, mem);
  const int64_t piece = n / static_cast<int64_t>(sizeof(float)) / P;
  c.reduce_scatter_sum(reinterpret_cast<const float*>(send), out, piece);
}

}  // namespace autosp::runtime
