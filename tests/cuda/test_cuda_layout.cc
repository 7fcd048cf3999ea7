// CUDA permute, split / concat and pack / unpack against kernels/cpu/layout: pure data
// movement, so every byte must match.
#include <catch2/catch.hpp>

#include <cstddef>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/layout.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (uint8_t& b : v) b = uint8_t(rng());
  return v;
}

int64_t product(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<int64_t>());
}

// permute on the GPU at a byte offset into both buffers, against the CPU kernel.
void check_permute(const std::vector<int64_t>& shape, const std::vector<int>& perm, int64_t elem_bytes,
                   int64_t offset) {
  INFO("rank " << shape.size() << ", elem_bytes " << elem_bytes << ", offset " << offset);
  const size_t bytes = size_t(product(shape) * elem_bytes);
  const std::vector<uint8_t> x = random_bytes(bytes + size_t(offset), 51);
  uint8_t* xd = device_copy(x);
  uint8_t* od = device_copy(std::vector<uint8_t>(bytes + size_t(offset)));
  gpu::permute(xd + offset, od + offset, shape, perm, elem_bytes, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<uint8_t> want(bytes);
  // The CPU kernel's float pointers are only carriers of raw bits.
  cpu::permute(reinterpret_cast<const float*>(x.data() + offset), reinterpret_cast<float*>(want.data()), shape, perm,
               elem_bytes);
  const std::vector<uint8_t> got = host_copy(od, bytes + size_t(offset));
  REQUIRE(std::vector<uint8_t>(got.begin() + offset, got.end()) == want);
  cudaFree(xd);
  cudaFree(od);
}

}  // namespace

TEST_CASE("CUDA permute moves the same bytes as the CPU kernel", "[cuda]") {
  REQUIRE_GPU();
  for (int64_t eb : {2, 4, 8}) {
    check_permute({2, 9, 3, 16}, {0, 2, 1, 3}, eb, 0);             // [B,T,H,D] -> [B,H,T,D]: 16-byte runs
    check_permute({2, 9, 3, 5}, {0, 2, 1, 3}, eb, 0);              // runs of D = 5 elements
    check_permute({2, 9, 3, 16}, {0, 2, 1, 3}, eb, eb);            // pointers off 16-byte alignment
    check_permute({33, 47}, {1, 0}, eb, 0);                        // a transpose: strided reads
    check_permute({2, 1, 3, 4, 1, 5}, {5, 3, 0, 4, 2, 1}, eb, 0);  // rank 6 with size-1 axes
    check_permute({4, 6, 8}, {0, 1, 2}, eb, 0);                    // the identity: one copy
    check_permute({1, 1}, {1, 0}, eb, 0);                          // one element
  }
}

TEST_CASE("CUDA split matches the CPU kernel and concat restores the tensor", "[cuda]") {
  REQUIRE_GPU();
  const std::vector<int64_t> shape = {4, 10, 6};
  for (int axis : {0, 1, 2})
    for (int64_t eb : {2, 4}) {
      INFO("axis " << axis << ", elem_bytes " << eb);
      const int64_t len = shape[size_t(axis)];
      const std::vector<int64_t> sizes = {1, 0, len - 1};  // an empty part included
      const int64_t total = product(shape) * eb, rest = total / len;
      const std::vector<uint8_t> x = random_bytes(size_t(total), 52);
      uint8_t* xd = device_copy(x);
      std::vector<void*> parts_dev;
      std::vector<std::vector<uint8_t>> parts_cpu;
      for (int64_t s : sizes) {
        parts_dev.push_back(device_copy(std::vector<uint8_t>(size_t(s * rest) + 1)));
        parts_cpu.emplace_back(size_t(s * rest) + 1);
      }
      gpu::split(xd, parts_dev, shape, axis, sizes, eb, nullptr);
      uint8_t* back = device_copy(std::vector<uint8_t>(size_t(total)));
      gpu::concat(std::vector<const void*>(parts_dev.begin(), parts_dev.end()), back, shape, axis, sizes, eb, nullptr);
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      std::vector<void*> parts_ptr;
      for (auto& p : parts_cpu) parts_ptr.push_back(p.data());
      cpu::split(x.data(), parts_ptr, shape, axis, sizes, eb);
      for (size_t k = 0; k < sizes.size(); ++k) {
        const size_t n = size_t(sizes[k] * rest);
        const std::vector<uint8_t> got = host_copy(static_cast<uint8_t*>(parts_dev[k]), n);
        REQUIRE(got == std::vector<uint8_t>(parts_cpu[k].begin(), parts_cpu[k].begin() + std::ptrdiff_t(n)));
      }
      REQUIRE(host_copy(back, size_t(total)) == x);
      for (void* p : parts_dev) cudaFree(p);
      cudaFree(xd);
      cudaFree(back);
    }
}

TEST_CASE("CUDA pack lays parts end to end and zeroes the rest; unpack copies them back", "[cuda]") {
  REQUIRE_GPU();
  const std::vector<int64_t> bytes = {6, 0, 10, 3};
  const int64_t out_bytes = 32;  // 19 used, 13 of padding
  std::vector<std::vector<uint8_t>> parts;
  std::vector<const void*> parts_dev;
  std::vector<void*> back_dev;
  for (size_t k = 0; k < bytes.size(); ++k) {
    parts.push_back(random_bytes(size_t(bytes[k]) + 1, 53 + uint32_t(k)));
    parts_dev.push_back(device_copy(parts.back()));
    back_dev.push_back(device_copy(std::vector<uint8_t>(size_t(bytes[k]) + 1)));
  }
  uint8_t* out = device_copy(std::vector<uint8_t>(size_t(out_bytes), 0xff));
  gpu::pack(parts_dev, bytes, out, out_bytes, nullptr);
  gpu::unpack(out, back_dev, bytes, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<uint8_t> want;
  for (size_t k = 0; k < bytes.size(); ++k) want.insert(want.end(), parts[k].begin(), parts[k].begin() + bytes[k]);
  want.resize(size_t(out_bytes), 0);
  REQUIRE(host_copy(out, size_t(out_bytes)) == want);
  for (size_t k = 0; k < bytes.size(); ++k) {
    const std::vector<uint8_t> got = host_copy(static_cast<uint8_t*>(back_dev[k]), size_t(bytes[k]));
    REQUIRE(got == std::vector<uint8_t>(parts[k].begin(), parts[k].begin() + bytes[k]));
  }
  for (const void* p : parts_dev) cudaFree(const_cast<void*>(p));
  for (void* p : back_dev) cudaFree(p);
  cudaFree(out);
}
