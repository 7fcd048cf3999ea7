// Token files and the batch loader. Files are written by the test itself, byte by byte, so
// the expected values come from the test, not from the reader under test.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "tests/test_util.h"
#include "trainer/data.h"

using namespace autosp;
using namespace autosp::trainer;

namespace {

// A fresh scratch path with no stale .mask companion beside it.
std::string temp_path(const std::string& name) {
  auto p = testing::scratch_path(name);
  std::filesystem::remove(p + ".mask");
  return p;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

// Little-endian encodings written out explicitly (independent of the host's layout).
void put_le(std::vector<uint8_t>& out, uint64_t v, int nbytes) {
  for (int i = 0; i < nbytes; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

std::string write_tokens(const std::string& name, const std::vector<uint32_t>& toks, int nbytes) {
  std::vector<uint8_t> b;
  for (uint32_t t : toks) put_le(b, t, nbytes);
  auto p = temp_path(name);
  write_bytes(p, b);
  return p;
}

std::string write_llmc(const std::string& name, const std::vector<uint32_t>& toks, int32_t magic = 20240520,
                       int32_t version = 1, int64_t count = -1) {
  std::vector<uint8_t> b;
  put_le(b, uint32_t(magic), 4);
  put_le(b, uint32_t(version), 4);
  put_le(b, uint32_t(count < 0 ? int64_t(toks.size()) : count), 4);
  b.resize(1024, 0);
  for (uint32_t t : toks) put_le(b, t, 2);
  auto p = temp_path(name);
  write_bytes(p, b);
  return p;
}

std::vector<uint32_t> iota_tokens(size_t n, uint32_t vocab) {
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint32_t(i % vocab);
  return v;
}

std::string open_error(const std::string& path, const std::string& format, int64_t vocab) {
  auto r = TokenFile::open(path, format, vocab);
  return r.ok() ? "" : r.status().message();
}

std::vector<int32_t> row(const Tensor& t, int64_t r) {
  const int64_t L = t.shape()[1];
  return std::vector<int32_t>(t.data<int32_t>() + r * L, t.data<int32_t>() + (r + 1) * L);
}

}  // namespace

TEST_CASE("u16, u32 and llm.c files yield the same tokens") {
  auto toks = iota_tokens(1000, 300);
  for (auto [path, fmt] : {std::pair{write_tokens("a.u16", toks, 2), "u16"},
                           std::pair{write_tokens("a.u32", toks, 4), "u32"},
                           std::pair{write_llmc("a.bin", toks), "llmc"}}) {
    INFO(fmt);
    auto f = TokenFile::open(path, fmt, 300);
    REQUIRE(f.ok());
    REQUIRE(f->size() == 1000);
    for (int64_t i = 0; i < 1000; ++i) REQUIRE(f->token(i) == int32_t(toks[size_t(i)]));
    CHECK(!f->has_mask());
  }
}

TEST_CASE("u32 files hold ids above 65535") {
  auto p = write_tokens("big.u32", {70000, 1, 99999}, 4);
  auto f = TokenFile::open(p, "u32", 100000);
  REQUIRE(f.ok());
  CHECK(f->token(0) == 70000);
  CHECK(f->token(2) == 99999);
}

TEST_CASE("a missing file is NotFound naming the path") {
  auto r = TokenFile::open("/nonexistent/tokens.u16", "u16", 257);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == StatusCode::not_found);
  CHECK_THAT(r.status().message(), Catch::Contains("/nonexistent/tokens.u16"));
}

TEST_CASE("a truncated raw file is an error naming the size and token width") {
  std::vector<uint8_t> b = {1, 0, 2, 0, 3};  // 2.5 u16 tokens
  auto p = temp_path("trunc.u16");
  write_bytes(p, b);
  CHECK_THAT(open_error(p, "u16", 257), Catch::Contains(p) && Catch::Contains("5 bytes") &&
                                            Catch::Contains("not a multiple of 2"));
  b.push_back(0);  // 6 bytes: fine as u16, truncated as u32
  write_bytes(p, b);
  CHECK(open_error(p, "u16", 257).empty());
  CHECK_THAT(open_error(p, "u32", 257), Catch::Contains("not a multiple of 4"));
}

TEST_CASE("an empty file and an unknown format are errors") {
  auto p = temp_path("empty.u16");
  write_bytes(p, {});
  CHECK_THAT(open_error(p, "u16", 257), Catch::Contains("no tokens"));
  CHECK_THAT(open_error(p, "u8", 257), Catch::Contains("data.format"));
}

TEST_CASE("llm.c headers are checked: magic, version, token count, size") {
  auto toks = iota_tokens(100, 50);
  CHECK(open_error(write_llmc("ok.bin", toks), "llmc", 50).empty());
  CHECK_THAT(open_error(write_llmc("magic.bin", toks, 12345), "llmc", 50),
             Catch::Contains("bad magic 12345 at offset 0") && Catch::Contains("20240520"));
  CHECK_THAT(open_error(write_llmc("version.bin", toks, 20240520, 2), "llmc", 50),
             Catch::Contains("version 2 at offset 4"));
  CHECK_THAT(open_error(write_llmc("count.bin", toks, 20240520, 1, 101), "llmc", 50),
             Catch::Contains("header says 101 tokens") && Catch::Contains("200 bytes"));
  auto p = temp_path("short.bin");
  write_bytes(p, std::vector<uint8_t>(512, 0));
  CHECK_THAT(open_error(p, "llmc", 50), Catch::Contains("512 bytes") && Catch::Contains("1024-byte"));
}

TEST_CASE("a token id outside the vocabulary is reported with its index") {
  auto toks = iota_tokens(500, 257);
  toks[321] = 257;
  toks[400] = 1000;
  auto p = write_tokens("badid.u16", toks, 2);
  CHECK_THAT(open_error(p, "u16", 257), Catch::Contains("token id 257 at index 321") &&
                                            Catch::Contains("byte offset 642") && Catch::Contains("vocab_size = 257"));
}

TEST_CASE("a file shorter than one window is an error at loader creation") {
  auto p = write_tokens("short.u16", iota_tokens(16, 257), 2);
  auto f = TokenFile::open(p, "u16", 257);
  REQUIRE(f.ok());
  CHECK(DataLoader::create(*f, 15, 1, 0, false, 256).ok());  // exactly seq_len + 1 tokens
  auto r = DataLoader::create(*f, 16, 1, 0, false, 256);
  REQUIRE(!r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("16 tokens") && Catch::Contains("train.seq_len + 1 = 17"));
}

TEST_CASE("targets are the inputs shifted by one, including the token after the window") {
  const int64_t T = 8, B = 3;
  auto toks = iota_tokens(10 * T + 1, 1000);  // token at index j is j: windows are easy to check
  auto f = TokenFile::open(write_tokens("shift.u16", toks, 2), "u16", 1000);
  REQUIRE(f.ok());
  auto dl = DataLoader::create(*f, T, B, 7, false, 0);
  REQUIRE(dl.ok());
  CHECK(dl->num_windows() == 10);
  for (int64_t step = 0; step < 5; ++step) {
    Batch b = dl->get(step);
    REQUIRE(b.tokens.shape() == Shape{B, T});
    for (int64_t r = 0; r < B; ++r) {
      const int32_t start = int32_t(dl->window(step, r) * T);
      for (int64_t i = 0; i < T; ++i) {
        CHECK(row(b.tokens, r)[size_t(i)] == start + i);
        CHECK(row(b.targets, r)[size_t(i)] == start + i + 1);
        CHECK(row(b.positions, r)[size_t(i)] == i);
        CHECK(row(b.segment_ids, r)[size_t(i)] == 0);
      }
    }
  }
}

TEST_CASE("every window appears once per epoch in a seed-determined order") {
  const int64_t T = 4, B = 3;
  auto f = TokenFile::open(write_tokens("order.u16", iota_tokens(7 * T + 1, 257), 2), "u16", 257);
  REQUIRE(f.ok());
  auto a = *DataLoader::create(*f, T, B, 42, false, 0);
  auto same = *DataLoader::create(*f, T, B, 42, false, 0);
  auto other = *DataLoader::create(*f, T, B, 43, false, 0);
  REQUIRE(a.num_windows() == 7);
  std::vector<int64_t> seq_a, seq_same, seq_other;
  for (int64_t s = 0; s < 14; ++s)  // 42 rows = 6 epochs; steps straddle epoch boundaries
    for (int64_t r = 0; r < B; ++r) {
      seq_a.push_back(a.window(s, r));
      seq_same.push_back(same.window(s, r));
      seq_other.push_back(other.window(s, r));
    }
  CHECK(seq_a == seq_same);
  CHECK(seq_a != seq_other);
  for (size_t e = 0; e < 6; ++e) {
    std::set<int64_t> windows(seq_a.begin() + long(e * 7), seq_a.begin() + long(e * 7 + 7));
    CHECK(windows.size() == 7);
  }
  // Different epochs use different permutations.
  CHECK(!std::equal(seq_a.begin(), seq_a.begin() + 7, seq_a.begin() + 7));
  // A pure function of step: asking out of order (as a resumed run does) changes nothing.
  auto fresh = *DataLoader::create(*f, T, B, 42, false, 0);
  for (int64_t s = 13; s >= 0; --s)
    for (int64_t r = 0; r < B; ++r) CHECK(fresh.window(s, r) == seq_a[size_t(s * B + r)]);
}

TEST_CASE("documents: segment ids count earlier eods in the window, positions restart after each") {
  const int32_t E = 9;  // eod
  // One window of T = 10: tokens 1 2 E 3 E E 4 5 6 E | next-window token 7
  std::vector<uint32_t> toks = {1, 2, E, 3, E, E, 4, 5, 6, E, 7};
  auto f = TokenFile::open(write_tokens("docs.u16", toks, 2), "u16", 10);
  REQUIRE(f.ok());
  auto dl = DataLoader::create(*f, 10, 1, 0, true, E);
  REQUIRE(dl.ok());
  Batch b = dl->get(0);
  CHECK(row(b.tokens, 0) == std::vector<int32_t>{1, 2, E, 3, E, E, 4, 5, 6, E});
  CHECK(row(b.targets, 0) == std::vector<int32_t>{2, E, 3, E, E, 4, 5, 6, E, 7});
  CHECK(row(b.segment_ids, 0) == std::vector<int32_t>{0, 0, 0, 1, 1, 2, 3, 3, 3, 3});
  CHECK(row(b.positions, 0) == std::vector<int32_t>{0, 1, 2, 0, 1, 0, 0, 1, 2, 3});
  // A shard starting mid-document still knows its segment and position.
  Batch s = dl->get(0, 4, 8);
  CHECK(row(s.segment_ids, 0) == std::vector<int32_t>{1, 2, 3, 3});
  CHECK(row(s.positions, 0) == std::vector<int32_t>{1, 0, 0, 1});
}

TEST_CASE("shard reads equal the slices of a full read") {
  const int64_t T = 12, B = 4;
  std::vector<uint32_t> toks;
  for (int i = 0; i < 30 * T + 1; ++i) toks.push_back(uint32_t((i * 7919) % 31 == 0 ? 30 : (i * 13) % 30));
  auto f = TokenFile::open(write_tokens("shard.u16", toks, 2), "u16", 31);
  REQUIRE(f.ok());
  for (bool documents : {false, true}) {
    auto dl = *DataLoader::create(*f, T, B, 5, documents, 30);
    for (int64_t step : {0, 3, 17}) {
      Batch full = dl.get(step);
      for (auto [a, e] : {std::pair<int64_t, int64_t>{0, 3}, {3, 6}, {5, 12}, {11, 12}, {7, 7}, {0, 12}}) {
        Batch part = dl.get(step, a, e);
        REQUIRE(part.tokens.shape() == Shape{B, e - a});
        for (int64_t r = 0; r < B; ++r)
          for (int64_t i = a; i < e; ++i) {
            INFO("documents " << documents << " step " << step << " row " << r << " i " << i);
            CHECK(row(part.tokens, r)[size_t(i - a)] == row(full.tokens, r)[size_t(i)]);
            CHECK(row(part.targets, r)[size_t(i - a)] == row(full.targets, r)[size_t(i)]);
            CHECK(row(part.positions, r)[size_t(i - a)] == row(full.positions, r)[size_t(i)]);
            CHECK(row(part.segment_ids, r)[size_t(i - a)] == row(full.segment_ids, r)[size_t(i)]);
          }
      }
    }
  }
}

TEST_CASE("a .mask companion turns unscored targets into -1") {
  auto p = write_tokens("masked.u16", {10, 11, 12, 13, 14, 15, 16, 17, 18}, 2);
  write_bytes(p + ".mask", {0, 0, 1, 0, 1, 1, 0, 0, 1});  // mask[i] scores token i as a target
  auto f = TokenFile::open(p, "u16", 20);
  REQUIRE(f.ok());
  CHECK(f->has_mask());
  auto dl = *DataLoader::create(*f, 4, 1, 0, false, 0);  // windows [0..4] and [4..8]
  for (int64_t step = 0; step < 2; ++step) {
    Batch b = dl.get(step);
    if (dl.window(step, 0) == 0)
      CHECK(row(b.targets, 0) == std::vector<int32_t>{-1, 12, -1, 14});
    else
      CHECK(row(b.targets, 0) == std::vector<int32_t>{15, -1, -1, 18});
    // Inputs are never masked.
    CHECK(row(b.tokens, 0)[0] == int32_t(10 + 4 * dl.window(step, 0)));
  }
}

TEST_CASE("a mask file of the wrong size or with bytes other than 0/1 is an error") {
  auto p = write_tokens("badmask.u16", {1, 2, 3, 4}, 2);
  write_bytes(p + ".mask", {1, 1, 1});
  CHECK_THAT(open_error(p, "u16", 10), Catch::Contains(".mask") && Catch::Contains("3 bytes") &&
                                           Catch::Contains("one byte per token"));
  write_bytes(p + ".mask", {1, 0, 2, 1});
  CHECK_THAT(open_error(p, "u16", 10), Catch::Contains("byte 2 at offset 2"));
}
