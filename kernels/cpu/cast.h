// f32 <-> bf16 conversion on the CPU. bf16 is stored as the upper 16 bits of an IEEE f32
// (uint16_t here); f32 -> bf16 rounds to nearest, ties to even, as CUDA's
// __float2bfloat16_rn does, so a CPU run of a bf16 program rounds like a GPU run.
#pragma once
#include <cstdint>
#include <cstring>

namespace autosp::kernels::cpu {

inline uint16_t f32_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // NaN stays a (quiet) NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

void cast_f32_to_bf16(const float* x, uint16_t* y, int64_t n);
void cast_bf16_to_f32(const uint16_t* x, float* y, int64_t n);

}  // namespace autosp::kernels::cpu
