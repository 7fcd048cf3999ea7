#include <catch2/catch.hpp>
#include <cmath>

#include "core/rng.h"
#include "core/shape.h"
#include "core/status.h"
#include "core/tensor.h"

using namespace autosp;

TEST_CASE("the RNG is a pure function of seed, stream and counter", "[rng]") {
  Rng a(42, 7), b(42, 7), other_seed(43, 7), other_stream(42, 8);
  for (uint64_t i : {0ull, 1ull, 1000ull, 1ull << 40}) {
    CHECK(a.normal(i) == b.normal(i));
    CHECK(a.bits(i) == b.bits(i));
    CHECK(a.bits(i) != other_seed.bits(i));
    CHECK(a.bits(i) != other_stream.bits(i));
  }
  // Drawing element 500 alone equals drawing it after 0..499: what lets a shard draw its slice.
  Rng c(42, 7);
  for (uint64_t i = 0; i < 500; ++i) (void)c.normal(i);
  CHECK(c.normal(500) == Rng(42, 7).normal(500));
}

TEST_CASE("Philox-4x32-10 matches the Random123 known-answer vector", "[rng]") {
  // Random123's kat_vectors: philox4x32 10 rounds, counter and key all 0.
  auto r = philox4x32({0, 0, 0, 0}, {0, 0});
  CHECK(r == std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
}

TEST_CASE("normal draws have mean 0 and variance 1", "[rng]") {
  // 200k samples: the standard error of the mean is 1/sqrt(2e5) = 0.0022 and of the variance
  // sqrt(2/2e5) = 0.0032, so 0.015 is about five standard errors.
  Rng r(1);
  double s = 0, s2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    double x = r.normal(uint64_t(i));
    s += x;
    s2 += x * x;
  }
  CHECK(std::abs(s / n) < 0.015);
  CHECK(std::abs(s2 / n - 1.0) < 0.015);
  for (int i = 0; i < 1000; ++i) {
    float u = r.uniform(uint64_t(i));
    CHECK((u >= 0.0f && u < 1.0f));
  }
}

TEST_CASE("StatusOr carries a value or the error that stopped it", "[status]") {
  auto half = [](int x) -> StatusOr<int> {
    if (x % 2) return InvalidArgument("train.batch_size: " + std::to_string(x) + " is odd");
    return x / 2;
  };
  auto twice_half = [&](int x) -> StatusOr<int> {
    ASSIGN_OR_RETURN(int h, half(x));
    return h * 2;
  };
  CHECK(twice_half(8).value() == 8);
  auto bad = twice_half(3);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == StatusCode::invalid_argument);
  CHECK(bad.status().message() == "train.batch_size: 3 is odd");
  CHECK(bad.status().with_context("config x.json").message() == "config x.json: train.batch_size: 3 is odd");
}

TEST_CASE("shapes and tensor views", "[tensor]") {
  Shape s{2, 3, 4};
  CHECK(s.numel() == 24);
  CHECK(s[-1] == 4);
  CHECK(s.str() == "[2,3,4]");
  CHECK(Shape{}.numel() == 1);
  Tensor t = Tensor::zeros(DType::f32, s);
  t.data<float>()[5] = 3.0f;
  Tensor r = t.reshape({6, 4});
  CHECK(r.data<float>()[5] == 3.0f);  // a view: same bytes
  Tensor c = t.clone();
  c.data<float>()[5] = 1.0f;
  CHECK(t.data<float>()[5] == 3.0f);  // a copy: its own bytes
  CHECK(reinterpret_cast<uintptr_t>(t.raw()) % 64 == 0);
}
