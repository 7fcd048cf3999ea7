// Tensor over Storage. Storage owns bytes on the host or on a device (the CUDA backend adopts
// its allocations with their release function; core itself knows no device API). A Tensor is a typed, shaped view at a byte offset into a Storage; it is
// what the runtime hands to kernels and what checkpoints read and write.
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "core/shape.h"

namespace autosp {

enum class Device : uint8_t { host, cuda };

class Storage {
 public:
  static std::shared_ptr<Storage> host(size_t bytes);
  // Takes ownership of `bytes` at p on device d; release(p) frees them (a capturing callable
  // may carry what freeing needs, e.g. a mapping's length).
  static std::shared_ptr<Storage> adopt(void* p, size_t bytes, Device d, std::function<void(void*)> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Storage(void* p, size_t b, Device d, std::function<void(void*)> release)
      : data_(p), bytes_(b), device_(d), release_(std::move(release)) {}
  void* data_;
  size_t bytes_;
  Device device_;
  std::function<void(void*)> release_;
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::shared_ptr<Storage> s, size_t offset, DType dt, Shape shape)
      : storage_(std::move(s)), offset_(offset), dtype_(dt), shape_(std::move(shape)) {
    AUTOSP_CHECK(storage_ && offset_ + nbytes() <= storage_->bytes()) << "tensor view out of storage";
  }
  // A fresh zero-filled host tensor.
  static Tensor zeros(DType dt, Shape shape);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  bool defined() const { return storage_ != nullptr; }

  void* raw() { return static_cast<char*>(storage_->data()) + offset_; }
  const void* raw() const { return static_cast<const char*>(storage_->data()) + offset_; }
  template <class T>
  T* data() { return static_cast<T*>(raw()); }
  template <class T>
  const T* data() const { return static_cast<const T*>(raw()); }

  // Same storage, new shape with the same element count.
  Tensor reshape(Shape s) const {
    AUTOSP_CHECK_EQ(s.numel(), numel());
    return Tensor(storage_, offset_, dtype_, std::move(s));
  }
  // A view of part of the same storage, byte_offset past this tensor's start.
  Tensor view(size_t byte_offset, DType dt, Shape s) const {
    return Tensor(storage_, offset_ + byte_offset, dt, std::move(s));
  }
  Tensor clone() const;

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  DType dtype_ = DType::f32;
  Shape shape_;
};

}  // namespace autosp
