// Counter-based RNG (Philox-4x32-10). The value at (seed, counter) is a pure function, so
// every rank and backend draws the same numbers for the same element index regardless of
// how work is split: rank r initialising elements [a, b) of a tensor gets exactly the
// values a single process would have produced there.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>

namespace autosp {

inline std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = uint64_t(M0) * ctr[0], p1 = uint64_t(M1) * ctr[2];
    ctr = {uint32_t(p1 >> 32) ^ ctr[1] ^ key[0], uint32_t(p1), uint32_t(p0 >> 32) ^ ctr[3] ^ key[1],
           uint32_t(p0)};
    key[0] += W0;
    key[1] += W1;
  }
  return ctr;
}

class Rng {
 public:
  // stream separates independent uses of one seed (e.g. one stream per parameter).
  explicit Rng(uint64_t seed, uint64_t stream = 0) : seed_(seed), stream_(stream) {}

  // Four uniform 32-bit words for counter i.
  std::array<uint32_t, 4> bits(uint64_t i) const {
    return philox4x32({uint32_t(i), uint32_t(i >> 32), uint32_t(stream_), uint32_t(stream_ >> 32)},
                      {uint32_t(seed_), uint32_t(seed_ >> 32)});
  }
  // Uniform in [0, 1), 24-bit resolution (exact in float).
  float uniform(uint64_t i) const { return (bits(i)[0] >> 8) * (1.0f / 16777216.0f); }
  // Standard normal via Box-Muller on words of counter i.
  float normal(uint64_t i) const {
    auto b = bits(i);
    double u1 = ((b[0] >> 8) + 1.0) / 16777217.0;  // (0, 1], log is finite
    double u2 = (b[1] >> 8) / 16777216.0;
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }

 private:
  uint64_t seed_, stream_;
};

}  // namespace autosp
