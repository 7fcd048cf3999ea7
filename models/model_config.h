// Architecture hyper-parameters shared by every model definition. Field names are the JSON
// keys of the config's "model" section (trainer/config.h); defaults are the tiny CPU model.
#pragma once
#include <cstdint>
#include <string>

namespace autosp::models {

struct ModelConfig {
  std::string arch = "llama";   // "llama" | "gpt2"
  int64_t vocab_size = 257;     // byte-level tokens + end-of-document (256)
  int64_t d_model = 128;
  int64_t n_layers = 2;
  int64_t n_heads = 4;
  int64_t n_kv_heads = 4;       // GQA: must divide n_heads (gpt2: equal to n_heads)
  int64_t ffn_hidden = 344;     // SwiGLU hidden width (llama) / MLP width (gpt2)
  int64_t max_seq_len = 1024;   // rope: no limit from the weights; gpt2: learned positions
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  bool tie_embeddings = false;  // lm_head shares model.embed_tokens.weight

  int64_t head_dim() const { return d_model / n_heads; }
};

}  // namespace autosp::models
