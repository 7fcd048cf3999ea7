#include "core/tensor.h"

#include <cstdlib>
#include <new>

namespace autosp {

std::shared_ptr<Storage> Storage::host(size_t bytes) {
  // 64-byte alignment: full cache lines and AVX-512 loads for every kernel.
  size_t padded = (bytes + 63) / 64 * 64;
  void* p = padded ? std::aligned_alloc(64, padded) : nullptr;
  if (padded && !p) throw std::bad_alloc();
  return std::shared_ptr<Storage>(new Storage(p, bytes, Device::host, std::free));
}

std::shared_ptr<Storage> Storage::adopt(void* p, size_t bytes, Device d, std::function<void(void*)> release) {
  return std::shared_ptr<Storage>(new Storage(p, bytes, d, std::move(release)));
}

Storage::~Storage() {
  if (data_ && release_) release_(data_);
}

Tensor Tensor::zeros(DType dt, Shape shape) {
  size_t bytes = size_t(shape.numel()) * dtype_size(dt);
  auto s = Storage::host(bytes);
  if (bytes) std::memset(s->data(), 0, bytes);
  return Tensor(std::move(s), 0, dt, std::move(shape));
}

Tensor Tensor::clone() const {
  Tensor t = zeros(dtype_, shape_);
  if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

}  // namespace autosp
