// A model that can learn can memorise one fixed batch: the loss must fall below 5% of its
// starting value. This exercises every forward kernel, every VJP rule and the arena plan
// together. The Adam loop is written here, independent of runtime/params.
#include <catch2/catch.hpp>
#include <cmath>

#include "core/rng.h"
#include "model_harness.h"

using namespace autosp;

namespace {

double overfit(const models::ModelConfig& cfg, bool documents, int steps, float lr) {
  const int64_t B = 2, T = 32;
  testing::CompiledModel m(cfg, {B, T, documents}, 7);
  // Random tokens: nothing to learn but the batch itself. With documents, three packed
  // documents per row, positions restarting at each.
  Rng rng(99);
  std::vector<int32_t> tok(B * T), tgt(B * T), pos(B * T), seg(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    tok[i] = int32_t(rng.bits(uint64_t(i))[0] % uint32_t(cfg.vocab_size));
    tgt[i] = int32_t(rng.bits(uint64_t(i))[1] % uint32_t(cfg.vocab_size));
    const int64_t t = i % T;
    seg[i] = documents ? int32_t(t / 11) : 0;
    pos[i] = documents ? int32_t(t % 11) : int32_t(t);
  }
  m.set_batch(tok, tgt, pos, seg);

  struct Moments { std::vector<float> m, v; };
  std::vector<Moments> mom;
  for (auto& p : m.params->params()) mom.push_back({std::vector<float>(p.value.numel()), std::vector<float>(p.value.numel())});
  const double first = m.run();
  double loss = first;
  for (int s = 1; s <= steps && loss > 0.05 * first; ++s) {
    for (size_t k = 0; k < m.params->params().size(); ++k) {
      auto& p = m.params->params()[k];
      float* w = p.value.data<float>();
      const float* g = p.grad.data<float>();
      for (int64_t i = 0; i < p.value.numel(); ++i) {
        mom[k].m[i] = 0.9f * mom[k].m[i] + 0.1f * g[i];
        mom[k].v[i] = 0.999f * mom[k].v[i] + 0.001f * g[i] * g[i];
        const double mh = mom[k].m[i] / (1 - std::pow(0.9, s)), vh = mom[k].v[i] / (1 - std::pow(0.999, s));
        w[i] -= float(lr * mh / (std::sqrt(vh) + 1e-8));
      }
    }
    loss = m.run();
  }
  INFO("start " << first << " end " << loss);
  CHECK(std::abs(first - std::log(double(cfg.vocab_size))) < 0.5);  // small init: near-uniform predictions
  return loss / first;
}

models::ModelConfig tiny(const std::string& arch) {
  models::ModelConfig c;
  c.arch = arch;
  c.vocab_size = 64;
  c.d_model = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = arch == "llama" ? 2 : 4;
  c.ffn_hidden = 128;
  c.max_seq_len = 64;
  return c;
}

}  // namespace

TEST_CASE("a 2-layer tiny Llama (GQA) overfits one batch", "[overfit]") {
  CHECK(overfit(tiny("llama"), false, 300, 1e-2f) < 0.05);
}

TEST_CASE("a 2-layer tiny Llama overfits one batch of packed documents", "[overfit]") {
  CHECK(overfit(tiny("llama"), true, 300, 1e-2f) < 0.05);
}

TEST_CASE("a 2-layer tiny GPT-2 overfits one batch", "[overfit]") {
  models::ModelConfig c = tiny("gpt2");
  c.tie_embeddings = true;
  CHECK(overfit(c, false, 300, 1e-2f) < 0.05);
}
