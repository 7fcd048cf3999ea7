// StagingMemOps: host memory behind a MemOps that says it is a device's, so CPU tests walk the
// paths device buffers take — sums staged through to_host/from_host, packing by copy2d into
// this object's own scratch, synchronize() before a communicator reads — and compare the
// results with the host path's. It counts its calls, so a test can tell the path was taken.
// Copies are thread-safe (one object may serve every rank of run_local); scratch() is for one
// thread at a time, like CudaMemOps's.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "runtime/mem_ops.h"

namespace autosp::testing {

class StagingMemOps final : public runtime::MemOps {
 public:
  bool device() const override { return true; }
  void copy(void* dst, const void* src, size_t bytes) override {
    ++copies;
    host().copy(dst, src, bytes);
  }
  void copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height) override {
    ++copies_2d;
    host().copy2d(dst, dpitch, src, spitch, width, height);
  }
  void to_host(void* h, const void* src, size_t bytes) override {
    ++to_host_calls;
    host().to_host(h, src, bytes);
  }
  void from_host(void* dst, const void* h, size_t bytes) override {
    ++from_host_calls;
    host().from_host(dst, h, bytes);
  }
  void* scratch(int which, size_t bytes) override {
    Buffer& b = scratch_.at(size_t(which));
    if (b.bytes < bytes) {
      b.data = std::make_unique<std::byte[]>(bytes);
      b.bytes = bytes;
    }
    return b.data.get();
  }
  void f32_to_bf16(void* dst, const void* src, size_t n) override { host().f32_to_bf16(dst, src, n); }
  void synchronize() override { ++synchronizes; }

  std::atomic<int64_t> copies{0}, copies_2d{0}, to_host_calls{0}, from_host_calls{0},
      synchronizes{0};

 private:
  static runtime::MemOps& host() { return runtime::host_mem_ops(); }
  struct Buffer {
    std::unique_ptr<std::byte[]> data;
    size_t bytes = 0;
  };
  std::array<Buffer, kScratch> scratch_;
};

}  // namespace autosp::testing
