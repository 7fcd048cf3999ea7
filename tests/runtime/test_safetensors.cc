// safetensors: round trips of every dtype, a hand-built file with known bytes (so the reader
// is checked against the format, not against our writer), and the corruption errors.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/safetensors.h"
#include "tests/test_util.h"

using namespace autosp;
using namespace autosp::runtime;
using autosp::testing::scratch_path;

namespace {

std::vector<uint8_t> read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_all(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// A file from a header string and data bytes, header length written little-endian by hand.
std::string hand_file(const std::string& name, const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b;
  for (int i = 0; i < 8; ++i) b.push_back(uint8_t(uint64_t(header.size()) >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  auto p = scratch_path(name);
  write_all(p, b);
  return p;
}

std::string load_error(const std::string& p) {
  auto r = load_safetensors(p);
  return r.ok() ? "" : r.status().message();
}

template <class T>
Tensor filled(DType dt, Shape s, T start) {
  Tensor t = Tensor::zeros(dt, std::move(s));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<T>()[i] = T(start + T(i));
  return t;
}

}  // namespace

TEST_CASE("every dtype round-trips bit-exactly with names, shapes and metadata") {
  Tensor bf = Tensor::zeros(DType::bf16, {3, 5});
  for (int i = 0; i < 15; ++i) bf.data<uint16_t>()[i] = uint16_t(0x3f80 + i);
  NamedTensors in = {{"model.embed_tokens.weight", filled<float>(DType::f32, {4, 3}, 0.25f)},
                     {"h.bf16", bf},
                     {"idx.i32", filled<int32_t>(DType::i32, {7}, -3)},
                     {"count.i64", filled<int64_t>(DType::i64, {2, 1, 2}, int64_t(1) << 40)},
                     {"scalar", filled<float>(DType::f32, {}, 42.0f)},
                     {"empty", Tensor::zeros(DType::f32, {0, 4})}};
  auto p = scratch_path("round.safetensors");
  REQUIRE(save_safetensors(p, in, {{"format", "pt"}, {"note", "hello"}}).ok());
  auto out = read_safetensors(p);
  REQUIRE(out.ok());
  CHECK(out->metadata == std::map<std::string, std::string>{{"format", "pt"}, {"note", "hello"}});
  REQUIRE(out->tensors.size() == in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    INFO(in[i].first);
    CHECK(out->tensors[i].first == in[i].first);
    const Tensor &a = in[i].second, &b = out->tensors[i].second;
    CHECK(b.dtype() == a.dtype());
    CHECK(b.shape() == a.shape());
    CHECK((a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0));
  }
  // The mapped reader sees the same tensors, and a tensor keeps the mapping alive after the
  // rest of the file's tensors are gone.
  Tensor kept;
  {
    auto mapped = map_safetensors(p);
    REQUIRE(mapped.ok());
    CHECK(mapped->metadata == out->metadata);
    REQUIRE(mapped->tensors.size() == in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      INFO("mapped " << in[i].first);
      const Tensor &a = in[i].second, &b = mapped->tensors[i].second;
      CHECK(mapped->tensors[i].first == in[i].first);
      CHECK(b.dtype() == a.dtype());
      CHECK(b.shape() == a.shape());
      CHECK((a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0));
    }
    kept = mapped->tensors[1].second;
  }
  CHECK(std::memcmp(kept.raw(), in[1].second.raw(), in[1].second.nbytes()) == 0);
  // The data section starts 8-byte aligned and no temporary file is left behind.
  auto bytes = read_all(p);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK((8 + n) % 8 == 0);
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(p).parent_path()))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("a hand-built file with known bytes parses") {
  // F32 [2] = {1.0, -2.0} (0x3f800000, 0xc0000000) then I64 [1] = {258} (bytes 02 01 0...).
  std::string header =
      R"({"b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}})";
  std::vector<uint8_t> data = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x02, 0x01, 0, 0, 0, 0, 0, 0};
  auto r = read_safetensors(hand_file("hand.safetensors", header, data));
  REQUIRE(r.ok());
  CHECK(r->metadata.at("k") == "v");
  REQUIRE(r->tensors.size() == 2);
  CHECK(r->tensors[0].first == "a");  // data-offset order
  CHECK(r->tensors[0].second.dtype() == DType::f32);
  CHECK(r->tensors[0].second.data<float>()[0] == 1.0f);
  CHECK(r->tensors[0].second.data<float>()[1] == -2.0f);
  CHECK(r->tensors[1].first == "b");
  CHECK(r->tensors[1].second.dtype() == DType::i64);
  CHECK(r->tensors[1].second.shape() == autosp::Shape{1});
  CHECK(r->tensors[1].second.data<int64_t>()[0] == 258);
}

TEST_CASE("our writer produces the exact bytes of the format") {
  NamedTensors in = {{"w", filled<float>(DType::f32, {2}, 1.0f)}};
  auto p = scratch_path("exact.safetensors");
  REQUIRE(save_safetensors(p, in).ok());
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::vector<uint8_t> expect;
  for (int i = 0; i < 8; ++i) expect.push_back(uint8_t(uint64_t(header.size()) >> (8 * i)));
  expect.insert(expect.end(), header.begin(), header.end());
  for (uint8_t b : {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40}) expect.push_back(b);  // 1.0f, 2.0f
  CHECK(read_all(p) == expect);
}

TEST_CASE("corrupt files are rejected with errors naming the problem") {
  const std::vector<uint8_t> eight(8, 0);
  auto tiny = scratch_path("tiny.safetensors");
  write_all(tiny, {1, 2, 3});
  CHECK_THAT(load_error(tiny), Catch::Contains("3 bytes") && Catch::Contains("too short"));

  auto huge = scratch_path("huge.safetensors");
  write_all(huge, {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'});
  CHECK_THAT(load_error(huge), Catch::Contains("header length 65535") && Catch::Contains("exceeds"));

  CHECK_THAT(load_error(hand_file("json.safetensors", "{\"a\": [", {})), Catch::Contains("not a JSON object"));
  CHECK_THAT(load_error(hand_file("dtype.safetensors", R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})",
                                  {0, 0, 0, 0})),
             Catch::Contains("tensor \"a\"") && Catch::Contains("\"F16\""));
  CHECK_THAT(load_error(hand_file("range.safetensors", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                                  eight)),
             Catch::Contains("tensor \"a\"") && Catch::Contains("[0, 16)") && Catch::Contains("outside"));
  CHECK_THAT(load_error(hand_file("size.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                                  eight)),
             Catch::Contains("hold 8 bytes") && Catch::Contains("needs 3 × 4"));
  CHECK_THAT(load_error(hand_file("overlap.safetensors",
                                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                  eight)),
             Catch::Contains("overlaps"));
  CHECK_THAT(load_error(hand_file("hole.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                  eight)),
             Catch::Contains("[0, 4) belong to no tensor"));
  CHECK_THAT(load_error(hand_file("tail.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                  eight)),
             Catch::Contains("data section is 8 bytes but tensors end at 4"));
  CHECK_THAT(load_error(hand_file("neg.safetensors", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                                  {0, 0, 0, 0})),
             Catch::Contains("non-negative"));
  CHECK_THAT(load_error(hand_file("meta.safetensors", R"({"__metadata__":{"k":1}})", {})),
             Catch::Contains("__metadata__.k must be a string"));
  // The mapped reader validates the same way before it maps anything.
  auto mapped_bad = map_safetensors(hand_file("overlap2.safetensors",
                                              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                              eight));
  REQUIRE(!mapped_bad.ok());
  CHECK_THAT(mapped_bad.status().message(), Catch::Contains("overlaps"));
  auto missing = load_safetensors(scratch_path("does-not-exist.safetensors"));
  REQUIRE(!missing.ok());
  CHECK(missing.status().code() == StatusCode::not_found);
}

TEST_CASE("duplicate or reserved tensor names are refused on save") {
  NamedTensors dup = {{"a", Tensor::zeros(DType::f32, {1})}, {"a", Tensor::zeros(DType::f32, {1})}};
  CHECK(!save_safetensors(scratch_path("dup.safetensors"), dup).ok());
  NamedTensors reserved = {{"__metadata__", Tensor::zeros(DType::f32, {1})}};
  CHECK(!save_safetensors(scratch_path("res.safetensors"), reserved).ok());
}

TEST_CASE("a failed write keeps the previous file and leaves no temporary") {
  auto p = scratch_path("atomic.safetensors");
  NamedTensors v1 = {{"w", filled<float>(DType::f32, {16}, 1.0f)}};
  NamedTensors v2 = {{"w", filled<float>(DType::f32, {16}, 100.0f)}};
  REQUIRE(save_safetensors(p, v1).ok());
  auto before = read_all(p);
  set_write_fault_after_bytes(40);
  Status st = save_safetensors(p, v2);
  set_write_fault_after_bytes(-1);
  REQUIRE(!st.ok());
  CHECK(st.code() == StatusCode::io_error);
  CHECK_THAT(st.message(), Catch::Contains("No space left on device"));
  CHECK(read_all(p) == before);
  CHECK(!std::filesystem::exists(p + ".tmp." + std::to_string(::getpid())));
}
