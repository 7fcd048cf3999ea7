// MemOps: how the runtime moves bytes outside kernels (collective packing, staging between
// ranks): host memcpy, or a GPU's copy engine on a stream (runtime/cuda/cuda_mem_ops.h).
// The tensor collectives (sp_collectives.h) and the local communicator (run_local in comm.h)
// are written against this interface, so the same code carries host and device buffers.
#pragma once
#include <cstddef>

namespace autosp::runtime {

class MemOps {
 public:
  virtual ~MemOps() = default;
  // The pointers handed to this object are device pointers (host code must not dereference
  // them; sums stage through to_host/from_host).
  virtual bool device() const = 0;
  // dst[bytes] := src[bytes]; the ranges do not overlap.
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;
  // height rows of width bytes, at pitches dpitch / spitch (cudaMemcpy2D semantics: row i
  // goes from src + i·spitch to dst + i·dpitch; width <= both pitches).
  virtual void copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height) = 0;
  // Complete on return: host holds the bytes.
  virtual void to_host(void* host, const void* src, size_t bytes) = 0;
  // Complete on return: dst holds the bytes and host may be reused. (A stream implementation
  // waits for its stream, so everything issued before is complete too.)
  virtual void from_host(void* dst, const void* host, size_t bytes) = 0;
  // Grow-only buffer `which` in [0, kScratch), owned by this object: at least `bytes`, its
  // contents unspecified after it grows. Valid until the next scratch(which, ...) call that
  // grows it. The tensor collectives use 0 and 1 for the duration of one call, and a converting
  // all_gather (collective_exec.cc) 2.
  static constexpr int kScratch = 4;
  virtual void* scratch(int which, size_t bytes) = 0;
  // dst[n] (bf16) := src[n] (f32), rounded to nearest even: for a collective that converts as
  // it moves (ZeRO-3 gathers an f32 shard as bf16; sp_compiler/lower.cc folds that cast into
  // the all_gather). Ordered and completed like copy().
  virtual void f32_to_bf16(void* dst, const void* src, size_t n) = 0;
  // Every copy issued so far is complete.
  virtual void synchronize() = 0;
};

// The process-wide host implementation: memcpy, every call complete on return. Copies are
// thread-safe. Scratch buffers are per thread (the executor's communication thread and its
// compute thread run collectives concurrently, and so do the ranks of run_local), kept for
// the thread's lifetime at the largest size it asked for.
MemOps& host_mem_ops();

}  // namespace autosp::runtime
