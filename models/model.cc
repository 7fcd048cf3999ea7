#include "models/model.h"

namespace autosp::models {

Status validate(const ModelConfig& c) {
  auto bad = [](const std::string& key, const std::string& what) {
    return InvalidArgument("model." + key + ": " + what);
  };
  if (c.arch != "llama" && c.arch != "gpt2") return bad("arch", "expected \"llama\" or \"gpt2\", got \"" + c.arch + "\"");
  if (c.vocab_size < 2) return bad("vocab_size", "expected >= 2");
  if (c.d_model < 1 || c.n_layers < 1 || c.n_heads < 1 || c.n_kv_heads < 1 || c.ffn_hidden < 1)
    return bad("d_model/n_layers/n_heads/n_kv_heads/ffn_hidden", "expected positive sizes");
  if (c.d_model % c.n_heads != 0)
    return bad("d_model", std::to_string(c.d_model) + " is not a multiple of n_heads " + std::to_string(c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0)
    return bad("n_heads", std::to_string(c.n_heads) + " is not a multiple of n_kv_heads " +
                              std::to_string(c.n_kv_heads));
  if (c.arch == "llama" && c.head_dim() % 2 != 0)
    return bad("d_model", "head_dim = d_model / n_heads must be even for rotary embeddings");
  if (c.arch == "gpt2" && c.n_kv_heads != c.n_heads) return bad("n_kv_heads", "gpt2 uses n_kv_heads == n_heads");
  if (c.max_seq_len < 1) return bad("max_seq_len", "expected >= 1");
  return Status::Ok();
}

StatusOr<ir::Graph> build(const ModelConfig& cfg, const StepShape& shape) {
  RETURN_IF_ERROR(validate(cfg));
  if (shape.seq_len < 1 || shape.batch < 1) return InvalidArgument("train.seq_len and train.batch_size must be >= 1");
  if (shape.seq_len > cfg.max_seq_len)
    return InvalidArgument("train.seq_len " + std::to_string(shape.seq_len) + " exceeds model.max_seq_len " +
                           std::to_string(cfg.max_seq_len));
  return cfg.arch == "llama" ? llama(cfg, shape) : gpt2(cfg, shape);
}

void lm_loss(ir::Builder& b, ir::ValueId hidden, ir::ValueId head, ir::ValueId targets) {
  auto ce = b.cross_entropy(hidden, head, targets);
  b.output("loss", b.div(ce.sum, ce.count));
  b.output("loss_sum", ce.sum);
  b.output("count", ce.count);
}

int64_t num_params(const ir::Graph& g) {
  int64_t n = 0;
  for (ir::ValueId p : g.params()) n += g.type(p).shape.numel();
  return n;
}

}  // namespace autosp::models
