// The real models' forward graphs survive print -> parse -> print unchanged and pass the
// verifier (tests/sp_compiler/test_autodiff.cc does the same after autodiff).
#include <catch2/catch.hpp>

#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "models/model.h"

using namespace autosp;

TEST_CASE("Llama and GPT-2 graphs round-trip through the text form", "[text][models]") {
  for (const char* arch : {"llama", "gpt2"})
    for (bool docs : {false, true})
      for (DType dt : {DType::f32, DType::bf16}) {
      DYNAMIC_SECTION(arch << (docs ? " with documents" : "") << " " << dtype_name(dt)) {
        models::ModelConfig c;
        c.arch = arch;
        c.vocab_size = 50;
        c.d_model = 32;
        c.n_heads = 4;
        c.n_kv_heads = std::string(arch) == "llama" ? 2 : 4;
        c.ffn_hidden = 40;
        c.max_seq_len = 16;
        c.tie_embeddings = std::string(arch) == "gpt2";
        ir::Graph g = models::build(c, {2, 16, docs, dt}).value();
        REQUIRE(ir::verify(g).ok());
        const std::string text = ir::print(g);
        auto parsed = ir::parse(text);
        INFO(parsed.status().message());
        REQUIRE(parsed.ok());
        CHECK(ir::verify(parsed.value()).ok());
        CHECK(ir::print(parsed.value()) == text);
        // bf16: every weight is cast at its use ("cast(%w) {dtype=bf16}" in the text).
        CHECK((text.find(") {dtype=bf16}") != std::string::npos) == (dt == DType::bf16));
      }
      }
}
