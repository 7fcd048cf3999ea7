// Data movement, type-agnostic (elements of 2, 4 or 8 bytes moved as raw bits): axis
// permutation, split / concat along an axis, and the pack / unpack of ZeRO buckets.
//
// permute simplifies the permutation with the CPU kernel's code (kernels/shape_walk.h: size-1
// axes dropped, output axes that are consecutive in x merged: [B,T,H,D] → [B,H,T,D] becomes a
// walk with a contiguous inner run of D), then one thread writes each output chunk. When the
// last output axis is contiguous in x, whole runs are moved in the widest chunk (up to 16
// bytes) that the run's byte size and both addresses allow; every other axis's x stride is a
// multiple of that run (the run is x's trailing axes), so the walk rescales exactly. Otherwise
// reads are strided, one element each.
//
// split / concat are strided copies: a part is `outer` rows of size·inner bytes at a pitch of
// full·inner bytes in the whole tensor, which is what cudaMemcpy2DAsync moves.
#include "core/check.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device.cuh"
#include "kernels/cuda/kernels.h"
#include "kernels/shape_walk.h"

namespace autosp::kernels::cuda {

using detail::offset_of;
using detail::Strided;

namespace {

// kernels

// out[i] = x[offset of i in the output walk]; sizes and strides in units of U.
template <class U>
__global__ void permute_kernel(const U* x, U* out, Strided walk, int64_t n) {
  AUTOSP_GRID_STRIDE(i, n) out[i] = x[offset_of(i, walk)];
}

template <class U>
void launch_permute(const void* x, void* out, Strided walk, int64_t n, cudaStream_t s) {
  permute_kernel<<<detail::grid_for(n), 256, 0, s>>>(static_cast<const U*>(x), static_cast<U*>(out), walk, n);
  CUDA_CHECK(cudaGetLastError());
}

void check_parts(const char* op, size_t n_parts, const std::vector<int64_t>& shape, int axis,
                 const std::vector<int64_t>& sizes, int64_t elem_bytes) {
  AUTOSP_CHECK(axis >= 0 && size_t(axis) < shape.size()) << op << ": axis " << axis << " of rank " << shape.size();
  AUTOSP_CHECK(n_parts == sizes.size()) << op << ": " << n_parts << " parts, " << sizes.size() << " sizes";
  AUTOSP_CHECK(elem_bytes > 0) << op << ": elem_bytes = " << elem_bytes;
  int64_t total = 0;
  for (int64_t v : sizes) total += v;
  AUTOSP_CHECK(total == shape[size_t(axis)])
      << op << ": sizes sum to " << total << ", axis has " << shape[size_t(axis)];
}

// `outer` rows of `width` bytes, from rows `spitch` apart to rows `dpitch` apart.
void copy_rows(void* dst, int64_t dpitch, const void* src, int64_t spitch, int64_t width, int64_t outer,
               cudaStream_t s) {
  if (width == 0 || outer == 0) return;
  if (outer == 1) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(width), cudaMemcpyDeviceToDevice, s));
  } else if (std::max(dpitch, spitch) < (int64_t(1) << 31)) {  // cudaDevAttrMaxPitch
    CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(dpitch), src, size_t(spitch), size_t(width), size_t(outer),
                                 cudaMemcpyDeviceToDevice, s));
  } else {  // rows of 2 GiB and more: few of them, one copy each
    for (int64_t o = 0; o < outer; ++o)
      CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + o * dpitch, static_cast<const char*>(src) + o * spitch,
                                 size_t(width), cudaMemcpyDeviceToDevice, s));
  }
}

}  // namespace

// launchers

void permute(const void* x, void* out, const std::vector<int64_t>& shape, const std::vector<int>& perm,
             int64_t elem_bytes, cudaStream_t s) {
  // Output axes in order, with size-1 axes dropped and x-consecutive neighbours merged (at most
  // the rank, so at most detail::Strided's 6).
  const shape_walk::PermuteWalk simple = shape_walk::permute_walk(shape, perm, elem_bytes, 6);
  AUTOSP_CHECK((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(out)) % uint64_t(elem_bytes) == 0)
      << "permute: buffers not aligned to their " << elem_bytes << "-byte elements";
  int64_t n = simple.n;
  if (n == 0) return;
  Strided walk;
  for (const shape_walk::PermuteAxis& a : simple.axes) {
    walk.size[walk.rank] = a.size;
    walk.stride[walk.rank] = a.x_stride;
    ++walk.rank;
  }
  const int last = walk.rank - 1;
  if (walk.rank == 1 && walk.stride[0] == 1) {  // the identity, once simplified
    CUDA_CHECK(cudaMemcpyAsync(out, x, size_t(n * elem_bytes), cudaMemcpyDeviceToDevice, s));
    return;
  }
  int64_t unit = elem_bytes;
  if (walk.stride[last] == 1) {
    const uint64_t bits = uint64_t(walk.size[last] * elem_bytes) | reinterpret_cast<uintptr_t>(x) |
                          reinterpret_cast<uintptr_t>(out) | 16u;
    unit = int64_t(bits & (~bits + 1));
    const int64_t per = unit / elem_bytes;  // elements per chunk (≥ 1: unit ≥ elem_bytes, both powers of 2)
    walk.size[last] /= per;
    for (int k = 0; k < last; ++k) walk.stride[k] /= per;
    n /= per;
  }
  switch (unit) {
    case 16:
      return launch_permute<uint4>(x, out, walk, n, s);
    case 8:
      return launch_permute<uint2>(x, out, walk, n, s);
    case 4:
      return launch_permute<uint32_t>(x, out, walk, n, s);
    default:
      return launch_permute<uint16_t>(x, out, walk, n, s);
  }
}

void split(const void* x, const std::vector<void*>& parts, const std::vector<int64_t>& shape, int axis,
           const std::vector<int64_t>& sizes, int64_t elem_bytes, cudaStream_t s) {
  check_parts("split", parts.size(), shape, axis, sizes, elem_bytes);
  const auto [outer, inner] = shape_walk::outer_inner(shape, axis, elem_bytes);
  const int64_t pitch = shape[size_t(axis)] * inner;
  const char* src = static_cast<const char*>(x);
  for (size_t k = 0; k < parts.size(); ++k) {
    copy_rows(parts[k], sizes[k] * inner, src, pitch, sizes[k] * inner, outer, s);
    src += sizes[k] * inner;
  }
}

void concat(const std::vector<const void*>& parts, void* out, const std::vector<int64_t>& shape, int axis,
            const std::vector<int64_t>& sizes, int64_t elem_bytes, cudaStream_t s) {
  check_parts("concat", parts.size(), shape, axis, sizes, elem_bytes);
  const auto [outer, inner] = shape_walk::outer_inner(shape, axis, elem_bytes);
  const int64_t pitch = shape[size_t(axis)] * inner;
  char* dst = static_cast<char*>(out);
  for (size_t k = 0; k < parts.size(); ++k) {
    // A part already in its place (one row, written there by its producer: sp_compiler/lower.cc) is not copied.
    if (outer != 1 || parts[k] != dst) copy_rows(dst, pitch, parts[k], sizes[k] * inner, sizes[k] * inner, outer, s);
    dst += sizes[k] * inner;
  }
}

void pack(const std::vector<const void*>& parts, const std::vector<int64_t>& bytes, void* out, int64_t out_bytes,
          cudaStream_t s) {
  AUTOSP_CHECK(parts.size() == bytes.size()) << "pack: " << parts.size() << " parts, " << bytes.size() << " sizes";
  int64_t at = 0;
  for (size_t k = 0; k < parts.size(); ++k) {
    AUTOSP_CHECK(bytes[k] >= 0 && at + bytes[k] <= out_bytes) << "pack: part " << k << " overruns " << out_bytes;
    // A part already in its place (written there by its producer: sp_compiler/lower.cc) is not copied.
    if (bytes[k] > 0 && parts[k] != static_cast<const char*>(out) + at)
      CUDA_CHECK(
          cudaMemcpyAsync(static_cast<char*>(out) + at, parts[k], size_t(bytes[k]), cudaMemcpyDeviceToDevice, s));
    at += bytes[k];
  }
  if (at < out_bytes) CUDA_CHECK(cudaMemsetAsync(static_cast<char*>(out) + at, 0, size_t(out_bytes - at), s));
}

void unpack(const void* x, const std::vector<void*>& parts, const std::vector<int64_t>& bytes, cudaStream_t s) {
  AUTOSP_CHECK(parts.size() == bytes.size()) << "unpack: " << parts.size() << " parts, " << bytes.size() << " sizes";
  int64_t at = 0;
  for (size_t k = 0; k < parts.size(); ++k) {
    AUTOSP_CHECK(bytes[k] >= 0) << "unpack: part " << k << " has " << bytes[k] << " bytes";
    if (bytes[k] > 0)
      CUDA_CHECK(
          cudaMemcpyAsync(parts[k], static_cast<const char*>(x) + at, size_t(bytes[k]), cudaMemcpyDeviceToDevice, s));
    at += bytes[k];
  }
}

}  // namespace autosp::kernels::cuda
