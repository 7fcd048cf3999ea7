// GPT-2-style decoder: learned absolute positions, LayerNorm with bias, multi-head causal
// attention, GELU MLP, biases on every projection. Names follow HF GPT-2
// (transformer.h.{i}...), except that attention uses separate q/k/v projections in
// [out, in] layout where HF fuses them into one Conv1D c_attn stored [in, out].
#include <cmath>

#include "ir/builder.h"
#include "models/model.h"

namespace autosp::models {

ir::Graph gpt2(const ModelConfig& c, const StepShape& s) {
  ir::Graph g;
  g.name = "gpt2";
  ir::Builder b(g);
  const int64_t B = s.batch, T = s.seq_len, D = c.d_model, H = c.n_heads, Dh = c.head_dim(), F = c.ffn_hidden;
  const ir::Init normal{ir::Init::Kind::normal, 0.02f};
  const ir::Init out_proj{ir::Init::Kind::normal, float(0.02 / std::sqrt(2.0 * double(c.n_layers)))};
  const ir::Init ones{ir::Init::Kind::ones, 0.0f};
  const ir::Init zeros{ir::Init::Kind::zeros, 0.0f};

  ir::ValueId tokens = b.input("tokens", DType::i32, {B, T});
  ir::ValueId targets = b.input("targets", DType::i32, {B, T});
  ir::ValueId positions = b.input("positions", DType::i32, {B, T});
  std::optional<ir::ValueId> segments;
  if (s.documents) segments = b.input("segments", DType::i32, {B, T});

  auto linear = [&](ir::ValueId x, const std::string& name, int64_t out, int64_t in, ir::Init init) {
    ir::ValueId w = b.param(name + ".weight", {out, in}, init);
    ir::ValueId bias = b.param(name + ".bias", {out}, zeros);
    return b.add(b.linear(x, b.cast(w, s.dtype)), b.cast(bias, s.dtype));
  };
  auto layer_norm = [&](ir::ValueId x, const std::string& name) {
    ir::ValueId w = b.param(name + ".weight", {D}, ones);
    ir::ValueId bias = b.param(name + ".bias", {D}, zeros);
    return b.layer_norm(x, w, bias, c.norm_eps);
  };

  ir::ValueId wte = b.param("transformer.wte.weight", {c.vocab_size, D}, normal);
  ir::ValueId wpe = b.param("transformer.wpe.weight", {c.max_seq_len, D}, normal);
  ir::ValueId tok_emb = b.embedding(tokens, wte);
  ir::ValueId x = b.cast(b.add(tok_emb, b.embedding(positions, wpe)), s.dtype);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    ir::ValueId h = layer_norm(x, p + "ln_1");
    ir::ValueId q = b.reshape(linear(h, p + "attn.q_proj", D, D, normal), {B, T, H, Dh});
    ir::ValueId k = b.reshape(linear(h, p + "attn.k_proj", D, D, normal), {B, T, H, Dh});
    ir::ValueId v = b.reshape(linear(h, p + "attn.v_proj", D, D, normal), {B, T, H, Dh});
    ir::ValueId o = b.attention(q, k, v, segments, /*causal=*/true).o;
    x = b.add(x, linear(b.reshape(o, {B, T, D}), p + "attn.c_proj", D, D, out_proj));
    h = layer_norm(x, p + "ln_2");
    x = b.add(x, linear(b.gelu(linear(h, p + "mlp.c_fc", F, D, normal)), p + "mlp.c_proj", D, F, out_proj));
  }
  x = layer_norm(x, "transformer.ln_f");
  ir::ValueId head = c.tie_embeddings ? wte : b.param("lm_head.weight", {c.vocab_size, D}, normal);
  lm_loss(b, x, b.cast(head, s.dtype), targets);
  return g;
}

}  // namespace autosp::models
