// The small Llama the compiler tests build graphs from: two layers, every op of the real
// model, and small enough that a pass runs in milliseconds.
#pragma once
#include "models/model.h"

namespace autosp::testing {

inline models::ModelConfig small_llama(int64_t n_heads = 2, int64_t n_kv_heads = 2) {
  models::ModelConfig c;
  c.vocab_size = 32;
  c.d_model = 16;
  c.n_heads = n_heads;
  c.n_kv_heads = n_kv_heads;
  c.ffn_hidden = 24;
  c.n_layers = 2;
  return c;
}

}  // namespace autosp::testing
