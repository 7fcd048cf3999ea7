// Tensor collectives (sp_collectives.h). All three reduce to one picture: a tensor seen as
// [outer, P·m, inner] along an axis holds P chunks [outer, m, inner], and the Communicator
// wants them as P consecutive row-major pieces. Going between the two is outer·P memcpys of
// m·inner bytes (pack_chunks / unpack_chunks); when outer == 1 the layouts coincide and the
// copy is skipped.
#include "runtime/sp_collectives.h"

#include <cstddef>
#include <cstring>

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
void pack_chunks(const std::byte* src, std::byte* dst, const AxisView& v, int P) {
  const int64_t m = v.extent / P, run = m * v.inner_bytes, chunk = v.outer * run;
  for (int64_t o = 0; o < v.outer; ++o)
    for (int j = 0; j < P; ++j)
      std::memcpy(dst + j * chunk + o * run, src + (o * v.extent + j * m) * v.inner_bytes, run);
}

// The inverse: dst ([outer, P·m, inner]) := src (P consecutive chunks) pasted along the axis.
void unpack_chunks(const std::byte* src, std::byte* dst, const AxisView& v, int P) {
  const int64_t m = v.extent / P, run = m * v.inner_bytes, chunk = v.outer * run;
  for (int64_t o = 0; o < v.outer; ++o)
    for (int j = 0; j < P; ++j)
      std::memcpy(dst + (o * v.extent + j * m) * v.inner_bytes, src + j * chunk + o * run, run);
}

const std::byte* bytes(const void* p) { return static_cast<const std::byte*>(p); }
std::byte* bytes(void* p) { return static_cast<std::byte*>(p); }

}  // namespace

void all_to_all_tensor(Communicator& c, const void* x, void* out, const std::vector<int64_t>& dims,
                       int split_axis, int concat_axis, int64_t elem_bytes) {
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
  // Scratch per call: the executor owns long-lived buffers; these live for one collective.
  std::vector<std::byte> send_buf, recv_buf;
  const std::byte* send = bytes(x);
  if (in.outer > 1) {
    send_buf.resize(n);
    pack_chunks(bytes(x), send_buf.data(), in, P);
    send = send_buf.data();
  }
  std::byte* recv = bytes(out);
  if (res.outer > 1) {
    recv_buf.resize(n);
    recv = recv_buf.data();
  }
  c.all_to_all(send, recv, n / P);
  if (res.outer > 1) unpack_chunks(recv, bytes(out), res, P);
}

void all_gather_tensor(Communicator& c, const void* x, void* out, const std::vector<int64_t>& dims, int axis,
                       int64_t elem_bytes) {
  const int P = c.size();
  view_at(dims, axis, elem_bytes);  // validates axis before it indexes dims
  std::vector<int64_t> out_dims = dims;
  out_dims[axis] *= P;
  const AxisView res = view_at(out_dims, axis, elem_bytes);
  const int64_t n = total_bytes(res);
  if (n == 0) return;
  std::vector<std::byte> recv_buf;
  std::byte* recv = bytes(out);
  if (res.outer > 1) {
    recv_buf.resize(n);
    recv = recv_buf.data();
  }
  c.all_gather(x, recv, n / P);
  if (res.outer > 1) unpack_chunks(recv, bytes(out), res, P);
}

void reduce_scatter_tensor(Communicator& c, const float* x, float* out, const std::vector<int64_t>& dims,
                           int axis) {
  const int P = c.size();
  const AxisView in = view_at(dims, axis, sizeof(float));
  AUTOSP_CHECK(in.extent % P == 0) << "reduce_scatter_tensor: axis " << axis << " has extent " << in.extent
                                   << ", not divisible by " << P << " ranks";
  const int64_t n = total_bytes(in);
  if (n == 0) return;
  std::vector<std::byte> send_buf;
  const std::byte* send = bytes(x);
  if (in.outer > 1) {
    send_buf.resize(n);
    pack_chunks(bytes(x), send_buf.data(), in, P);
    send = send_buf.data();
  }
  const int64_t piece = n / static_cast<int64_t>(sizeof(float)) / P;
  c.reduce_scatter_sum(reinterpret_cast<const float*>(send), out, piece);
}

}  // namespace autosp::runtime
