// The host MemOps: every copy is a memcpy, complete on return.
#include "runtime/mem_ops.h"

#include <array>
#include <cstring>
#include <memory>

#include "core/check.h"
#include "kernels/cpu/cast.h"

namespace autosp::runtime {
namespace {

class HostMemOps final : public MemOps {
 public:
  bool device() const override { return false; }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
  void copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height) override {
    AUTOSP_CHECK(width <= dpitch && width <= spitch)
        << "copy2d: width " << width << " exceeds a pitch (" << dpitch << ", " << spitch << ")";
    if (width == 0 || height == 0) return;
    if (width == dpitch && width == spitch) {  // the rows are contiguous
      copy(dst, src, width * height);
      return;
    }
    auto* d = static_cast<std::byte*>(dst);
    const auto* s = static_cast<const std::byte*>(src);
    for (size_t i = 0; i < height; ++i) std::memcpy(d + i * dpitch, s + i * spitch, width);
  }
  void to_host(void* host, const void* src, size_t bytes) override { copy(host, src, bytes); }
  void from_host(void* dst, const void* host, size_t bytes) override { copy(dst, host, bytes); }
  void* scratch(int which, size_t bytes) override {
    AUTOSP_CHECK(which >= 0 && which < kScratch) << "scratch buffer " << which << " outside [0, " << kScratch << ")";
    struct Buffer {
      std::unique_ptr<std::byte[]> data;
      size_t bytes = 0;
    };
    // Per thread: two threads packing collectives at once must not share a buffer, and a
    // thread's buffers are freed when it ends (run_local's ranks, the executor's thread).
    thread_local std::array<Buffer, kScratch> buffers;
    Buffer& b = buffers[which];
    if (b.bytes < bytes) {
      b.data = std::make_unique_for_overwrite<std::byte[]>(bytes);
      b.bytes = bytes;
    }
    return b.data.get();
  }
  void f32_to_bf16(void* dst, const void* src, size_t n) override {
    kernels::cpu::cast_f32_to_bf16(static_cast<const float*>(src), static_cast<uint16_t*>(dst), int64_t(n));
  }
  void synchronize() override {}
};

}  // namespace

MemOps& host_mem_ops() {
  static HostMemOps ops;
  return ops;
}

}  // namespace autosp::runtime
