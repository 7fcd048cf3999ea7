// Rotary position embedding, Hugging Face Llama convention ("rotate_half"): within a head of
// size D, element i pairs with i + D/2 and rotates by angle pos * theta^(-2i/D).
// x, y: [B, T, H, D]; pos: [B, T] (global positions, so a sequence shard rotates correctly).
// inverse rotates by -angle: the VJP of rope is rope with inverse = true.
#pragma once
#include <cstdint>

namespace autosp::kernels::cpu {

void rope(const float* x, const int32_t* pos, float* y, int64_t B, int64_t T, int64_t H, int64_t D, float theta,
          bool inverse);

}  // namespace autosp::kernels::cpu
