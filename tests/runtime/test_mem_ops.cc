// The host MemOps (runtime/mem_ops.cc): copy2d moves exactly the rows it names and nothing
// between them, and scratch buffers are grow-only and private to each thread (the executor's
// communication thread packs while its compute thread may pack too).
#include <catch2/catch.hpp>

#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

#include "runtime/mem_ops.h"

using namespace autosp::runtime;

TEST_CASE("host copy2d copies height rows of width bytes between the pitches and leaves the gaps alone") {
  MemOps& mem = host_mem_ops();
  CHECK_FALSE(mem.device());
  std::vector<uint8_t> src(5 * 7);
  std::iota(src.begin(), src.end(), uint8_t(1));
  // Rows of 3 bytes, read every 7 bytes, written every 4.
  std::vector<uint8_t> dst(5 * 4, 0xEE);
  mem.copy2d(dst.data(), 4, src.data(), 7, 3, 5);
  for (size_t row = 0; row < 5; ++row) {
    CAPTURE(row);
    for (size_t i = 0; i < 3; ++i) CHECK(dst[row * 4 + i] == src[row * 7 + i]);
    CHECK(dst[row * 4 + 3] == 0xEE);
  }
  // Equal pitch and width: the rows are one contiguous range.
  std::vector<uint8_t> flat(12, 0);
  mem.copy2d(flat.data(), 3, src.data(), 3, 3, 4);
  CHECK(std::equal(flat.begin(), flat.end(), src.begin()));
  // Nothing to copy: the pointers are not touched.
  mem.copy2d(nullptr, 4, nullptr, 7, 0, 5);
  mem.copy2d(nullptr, 4, nullptr, 7, 3, 0);
}

TEST_CASE("host scratch buffers grow only, one per index and per thread") {
  MemOps& mem = host_mem_ops();
  void* big = mem.scratch(0, 1024);
  CHECK(mem.scratch(0, 16) == big);  // smaller: the same buffer
  void* other = mem.scratch(1, 1024);
  CHECK(other != big);
  static_cast<uint8_t*>(big)[1023] = 7;  // the whole size asked for is usable
  void* elsewhere = nullptr;
  std::thread([&] { elsewhere = mem.scratch(0, 1024); }).join();
  CHECK(elsewhere != big);
  CHECK(mem.scratch(0, 1024) == big);
}
