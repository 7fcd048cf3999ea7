// Llama-style decoder: RMSNorm, rotary positions (HF rotate_half), grouped-query causal
// attention, SwiGLU MLP, final norm, LM head (optionally tied to the embedding).
#include <cmath>

#include "ir/builder.h"
#include "models/model.h"

namespace autosp::models {

ir::Graph llama(const ModelConfig& c, const StepShape& s) {
  ir::Graph g;
  g.name = "llama";
  ir::Builder b(g);
  const int64_t B = s.batch, T = s.seq_len, D = c.d_model, H = c.n_heads, Hkv = c.n_kv_heads, Dh = c.head_dim();
  const ir::Init normal{ir::Init::Kind::normal, 0.02f};
  // Residual-branch output projections start smaller so the residual stream's variance does
  // not grow with depth (GPT-2 / Megatron scaling 1/sqrt(2·layers)).
  const ir::Init out_proj{ir::Init::Kind::normal, float(0.02 / std::sqrt(2.0 * double(c.n_layers)))};
  const ir::Init ones{ir::Init::Kind::ones, 0.0f};

  ir::ValueId tokens = b.input("tokens", DType::i32, {B, T});
  ir::ValueId targets = b.input("targets", DType::i32, {B, T});
  ir::ValueId positions = b.input("positions", DType::i32, {B, T});
  std::optional<ir::ValueId> segments;
  if (s.documents) segments = b.input("segments", DType::i32, {B, T});

  auto w = [&](ir::ValueId param) { return b.cast(param, s.dtype); };  // a weight at its use
  ir::ValueId embed = b.param("model.embed_tokens.weight", {c.vocab_size, D}, normal);
  ir::ValueId x = b.cast(b.embedding(tokens, embed), s.dtype);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    ir::ValueId ln1 = b.param(p + "input_layernorm.weight", {D}, ones);
    ir::ValueId wq = b.param(p + "self_attn.q_proj.weight", {H * Dh, D}, normal);
    ir::ValueId wk = b.param(p + "self_attn.k_proj.weight", {Hkv * Dh, D}, normal);
    ir::ValueId wv = b.param(p + "self_attn.v_proj.weight", {Hkv * Dh, D}, normal);
    ir::ValueId wo = b.param(p + "self_attn.o_proj.weight", {D, H * Dh}, out_proj);
    ir::ValueId ln2 = b.param(p + "post_attention_layernorm.weight", {D}, ones);
    ir::ValueId wg = b.param(p + "mlp.gate_proj.weight", {c.ffn_hidden, D}, normal);
    ir::ValueId wu = b.param(p + "mlp.up_proj.weight", {c.ffn_hidden, D}, normal);
    ir::ValueId wd = b.param(p + "mlp.down_proj.weight", {D, c.ffn_hidden}, out_proj);

    ir::ValueId h = b.rms_norm(x, ln1, c.norm_eps);
    ir::ValueId q = b.rope(b.reshape(b.linear(h, w(wq)), {B, T, H, Dh}), positions, c.rope_theta);
    ir::ValueId k = b.rope(b.reshape(b.linear(h, w(wk)), {B, T, Hkv, Dh}), positions, c.rope_theta);
    ir::ValueId v = b.reshape(b.linear(h, w(wv)), {B, T, Hkv, Dh});
    ir::ValueId o = b.attention(q, k, v, segments, /*causal=*/true).o;
    x = b.add(x, b.linear(b.reshape(o, {B, T, H * Dh}), w(wo)));

    h = b.rms_norm(x, ln2, c.norm_eps);
    ir::ValueId gate = b.linear(h, w(wg));  // named steps: C++ leaves argument order unspecified,
    ir::ValueId up = b.linear(h, w(wu));    // and the graph (and its text) should not depend on it
    x = b.add(x, b.linear(b.swiglu(gate, up), w(wd)));
  }
  ir::ValueId norm = b.param("model.norm.weight", {D}, ones);
  x = b.rms_norm(x, norm, c.norm_eps);
  ir::ValueId head = c.tie_embeddings ? embed : b.param("lm_head.weight", {c.vocab_size, D}, normal);
  lm_loss(b, x, w(head), targets);
  return g;
}

}  // namespace autosp::models
