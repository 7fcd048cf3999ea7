// The IR text form: golden output for a tiny graph, exact round trips (print → parse →
// print) over graphs that use every op, sharding and init kind, and parse errors that point
// at the line and column of the mistake.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "ir/builder.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"

using namespace autosp;
using namespace autosp::ir;

namespace {

Init normal(float std) { return {Init::Kind::normal, std}; }
const Init kOnes{Init::Kind::ones, 0.0f};
const Init kZeros{Init::Kind::zeros, 0.0f};

// print → parse → print must reproduce the text, and the parsed graph must verify.
void check_round_trip(const Graph& g) {
  REQUIRE(verify(g).message() == "");
  const std::string text = print(g);
  auto parsed = parse(text);
  INFO(text);
  REQUIRE(parsed.status().message() == "");
  CHECK(verify(parsed.value()).ok());
  CHECK(print(parsed.value()) == text);
  CHECK(parsed.value().values.size() == g.values.size());
}

// A Llama-style block with packed documents: rms_norm, GQA attention with segment ids,
// rope, swiglu, fused cross-entropy, loss = sum / count.
Graph llama_block() {
  Graph g;
  g.name = "llama_block";
  Builder b(g);
  const int64_t B = 2, T = 8, D = 32, H = 4, KV = 2, HD = 8, V = 40, F = 48;
  ValueId tokens = b.input("tokens", DType::i32, {B, T});
  ValueId targets = b.input("targets", DType::i32, {B, T});
  ValueId positions = b.input("positions", DType::i32, {B, T});
  ValueId segments = b.input("segments", DType::i32, {B, T});
  ValueId emb = b.param("model.embed_tokens.weight", {V, D}, normal(0.02f));
  ValueId g1 = b.param("model.layers.0.input_layernorm.weight", {D}, kOnes);
  ValueId wq = b.param("model.layers.0.self_attn.q_proj.weight", {H * HD, D}, normal(0.02f));
  ValueId wk = b.param("model.layers.0.self_attn.k_proj.weight", {KV * HD, D}, normal(0.02f));
  ValueId wv = b.param("model.layers.0.self_attn.v_proj.weight", {KV * HD, D}, normal(0.02f));
  ValueId wo = b.param("model.layers.0.self_attn.o_proj.weight", {D, H * HD}, normal(0.0025f));
  ValueId g2 = b.param("model.layers.0.post_attention_layernorm.weight", {D}, kOnes);
  ValueId wg = b.param("model.layers.0.mlp.gate_proj.weight", {F, D}, normal(0.02f));
  ValueId wu = b.param("model.layers.0.mlp.up_proj.weight", {F, D}, normal(0.02f));
  ValueId wd = b.param("model.layers.0.mlp.down_proj.weight", {D, F}, normal(0.02f));
  ValueId gn = b.param("model.norm.weight", {D}, kOnes);
  ValueId head = b.param("lm_head.weight", {V, D}, normal(0.02f));

  ValueId x = b.embedding(tokens, emb);
  ValueId h = b.rms_norm(x, g1, 1e-5f);
  ValueId q = b.rope(b.reshape(b.linear(h, wq), {B, T, H, HD}), positions, 10000.0f);
  ValueId k = b.rope(b.reshape(b.linear(h, wk), {B, T, KV, HD}), positions, 500000.0f);
  ValueId v = b.reshape(b.linear(h, wv), {B, T, KV, HD});
  auto att = b.attention(q, k, v, segments, true, 0.0f);
  x = b.add(x, b.linear(b.reshape(att.o, {B, T, H * HD}), wo));
  h = b.rms_norm(x, g2, 1e-6f);
  x = b.add(x, b.linear(b.swiglu(b.linear(h, wg), b.linear(h, wu)), wd));
  auto loss = b.cross_entropy(b.rms_norm(x, gn, 1e-5f), head, targets, -1, 16);
  b.output("loss", b.div(loss.sum, loss.count));
  b.output("count", loss.count);
  b.output("lse", loss.lse);
  b.output("lse_sum", b.sum(att.lse, {0, 2}));
  return g;
}

// A GPT-2-style block plus the remaining forward ops: layer_norm, gelu, non-causal attention
// with an explicit scale, permute, broadcast, mean, sub/mul/scale/silu, rope with inverse.
Graph gpt2_block() {
  Graph g;
  g.name = "gpt2";
  Builder b(g);
  const int64_t B = 1, T = 6, D = 16, H = 2, HD = 8;
  ValueId x = b.input("x", DType::f32, {B, T, D});
  ValueId pos = b.input("pos", DType::i32, {3 * B, T});
  ValueId ln_g = b.param("h.0.ln_1.weight", {D}, kOnes);
  ValueId ln_b = b.param("h.0.ln_1.bias", {D}, kZeros);
  ValueId w = b.param("h.0.attn.c_attn.weight", {D, 3 * D}, normal(0.02f));
  ValueId bias = b.param("h.0.attn.c_attn.bias", {3 * D}, kZeros);
  ValueId h = b.layer_norm(x, ln_g, ln_b, 1e-5f);
  ValueId qkv = b.add(b.matmul(h, w), bias);
  ValueId qkv4 = b.reshape(qkv, {B, T, 3, H, HD});
  ValueId perm = b.permute(qkv4, {2, 0, 1, 3, 4});  // [3, B, T, H, HD]
  ValueId flat = b.reshape(perm, {3 * B * T * H * HD});
  ValueId q = b.reshape(flat, {3 * B, T, H, HD});
  ValueId r = b.rope(q, pos, 10000.0f, true);
  auto att = b.attention(r, r, r, std::nullopt, false, 0.35355339f);
  ValueId y = b.gelu(b.mul(att.o, b.scale(att.o, 1.0f / 3.0f)));
  ValueId z = b.sub(b.silu(y), b.broadcast(b.mean(y, {0, 1}), {3 * B, T, H, HD}, {0, 1}, 0.125f));
  b.output("z", b.mean(z));
  b.output("w.gram", b.matmul(w, w, true, false));
  return g;
}

// Every backward op, built directly (they are what VJP rules emit).
Graph backward_ops() {
  Graph g;
  g.name = "backward";
  Builder b(g);
  ValueId tok = b.input("tok", DType::i32, {2, 4});
  ValueId x = b.input("x", DType::f32, {2, 4, 8});
  ValueId dy = b.input("dy", DType::f32, {2, 4, 8});
  ValueId gw = b.param("g", {8}, kOnes);
  ValueId q = b.input("q", DType::f32, {2, 4, 2, 4});
  ValueId seg = b.input("seg", DType::i32, {2, 4});
  ValueId head = b.param("head", {11, 8}, normal(0.5f));
  b.output("d_emb", b.op1(Op::embedding_backward, {tok, dy}, EmbeddingBackwardAttrs{11}));
  auto rn = b.op(Op::rms_norm_backward, {x, gw, dy}, NormAttrs{1e-6f});
  auto ln = b.op(Op::layer_norm_backward, {x, gw, dy}, NormAttrs{1e-5f});
  b.output("d_rms", rn[0]);
  b.output("d_ln_b", ln[2]);
  b.output("d_silu", b.op1(Op::silu_backward, {x, dy}));
  b.output("d_gelu", b.op1(Op::gelu_backward, {x, dy}));
  b.output("d_swiglu_up", b.op(Op::swiglu_backward, {x, x, dy})[1]);
  auto att = b.attention(q, q, q, seg);
  auto da = b.op(Op::attention_backward, {q, q, q, att.o, att.lse, att.o, seg}, AttentionAttrs{true, 0.5f});
  b.output("dq", da[0]);
  auto ce = b.cross_entropy(x, head, tok, 0, 3);
  auto dce = b.op(Op::cross_entropy_backward, {x, head, tok, ce.lse, ce.sum}, CrossEntropyAttrs{0, 3});
  b.output("dh", dce[0]);
  b.output("dw", dce[1]);
  return g;
}

}  // namespace

TEST_CASE("a tiny graph prints as the golden text, with results numbered in definition order") {
  Graph g;
  g.name = "tiny";
  Builder b(g);
  ValueId x = b.input("x", DType::f32, {2, 4});
  ValueId y = b.silu(x);
  // Declared after a node, so its value id is larger than %0's: the text must not care.
  ValueId w = b.param("w", {4, 4}, normal(0.02f));
  ValueId bias = b.param("b", {4}, kZeros);
  ValueId z = b.add(b.linear(y, w), bias);
  g.values[x].sharding = {ShardKind::shard, 0};
  g.values[w].sharding = {ShardKind::replicate, -1};
  auto att_free = b.sum(z, {1});
  g.values[att_free].sharding = {ShardKind::partial, -1};
  b.output("loss", att_free);
  b.output("x", x);
  const char* golden =
      "graph @tiny(%x: f32[2,4]{S:shard(0)} input, %w: f32[4,4]{S:rep} param normal(0.02), "
      "%b: f32[4] param zeros) {\n"
      "  %0 = silu(%x) : f32[2,4]\n"
      "  %1 = matmul(%0, %w) {trans_a=false, trans_b=true} : f32[2,4]\n"
      "  %2 = add(%1, %b) : f32[2,4]\n"
      "  %3 = sum(%2) {axes=[1]} : f32[2]{S:partial}\n"
      "  return loss=%3, x=%x\n"
      "}\n";
  CHECK(print(g) == golden);
  CHECK(print_node(g, g.nodes[1]) == "%1 = matmul(%0, %w) {trans_a=false, trans_b=true} : f32[2,4]");
  check_round_trip(g);
}

TEST_CASE("multi-result nodes print every result and type") {
  Graph g;
  g.name = "att";
  Builder b(g);
  ValueId q = b.input("q", DType::f32, {2, 64, 4, 16});
  auto a = b.attention(q, q, q, std::nullopt, true, 0.125f);
  b.output("o", a.o);
  CHECK(print_node(g, g.nodes[0]) ==
        "%0, %1 = attention(%q, %q, %q) {causal=true, scale=0.125, indexed=false} : f32[2,64,4,16], f32[2,4,64]");
}

TEST_CASE("a Llama-style block round-trips exactly") { check_round_trip(llama_block()); }

TEST_CASE("a GPT-2-style block with every remaining forward op round-trips exactly") {
  check_round_trip(gpt2_block());
}

TEST_CASE("graphs of backward ops round-trip exactly") { check_round_trip(backward_ops()); }

TEST_CASE("sharding annotations on arguments and results round-trip") {
  Graph g = llama_block();
  for (size_t i = 0; i < g.values.size(); ++i) {
    Value& v = g.values[i];
    if (i % 3 == 0 && v.type.shape.rank() > 1) v.sharding = {ShardKind::shard, 1};
    if (i % 3 == 1) v.sharding = {ShardKind::replicate, -1};
    if (i % 3 == 2) v.sharding = {ShardKind::partial, -1};
  }
  check_round_trip(g);
  CHECK(print(g).find("{S:shard(1)}") != std::string::npos);
}

TEST_CASE("float attributes and inits round-trip bit-exactly") {
  for (float f : {0.1f, 1e-5f, 1.0f / 3.0f, -0.0f, 3.4e38f, 1e-45f, 0.0f, 123456.789f,
                  std::numeric_limits<float>::infinity()}) {
    Graph g;
    g.name = "floats";
    Builder b(g);
    ValueId x = b.input("x", DType::f32, {3});
    ValueId w = b.param("w", {3}, normal(f));
    b.output("y", b.add(b.scale(x, f), w));
    INFO(print(g));
    check_round_trip(g);
    Graph p = parse(print(g)).value();
    const float s = std::get<ScaleAttrs>(p.nodes[0].attrs).scale;
    CHECK(std::signbit(s) == std::signbit(f));
    CHECK((s == f));
    CHECK(p.args[1].init.std == f);
  }
}

TEST_CASE("names that are not identifiers are quoted so that any graph round-trips") {
  Graph g;
  g.name = "odd name";
  Builder b(g);
  ValueId a = b.input("3", DType::f32, {2});  // would clash with node result %3 if bare
  ValueId c = b.input("with space \"and\" \\ quotes", DType::f32, {2});
  ValueId e = b.input("", DType::f32, {2});
  ValueId s = b.add(b.add(b.add(a, c), e), a);
  for (int i = 0; i < 3; ++i) s = b.silu(s);
  b.output("0", s);
  b.output("", a);
  const std::string text = print(g);
  CHECK(text.rfind("graph @\"odd name\"(%\"3\": f32[2] input, %\"with space \\\"and\\\" \\\\ quotes\"", 0) == 0);
  auto p = parse(text);
  REQUIRE(p.status().message() == "");
  CHECK(print(p.value()) == text);
  CHECK(p.value().find_arg("with space \"and\" \\ quotes") == 1);
}

TEST_CASE("graphs without arguments, nodes or outputs round-trip") {
  Graph g;
  CHECK(print(g) == "graph @main() {\n  return\n}\n");
  auto p = parse(print(g));
  REQUIRE(p.ok());
  CHECK(print(p.value()) == print(g));
}

TEST_CASE("hand-written text may use free names, default attributes, comments and line breaks") {
  const char* text = R"(// a golden test input
graph @hand(%x: f32[1,4,2,8]{S:shard(1)} input,
            %p: i32[1,4] input) {
  %q = rope(%x, %p) {inverse=true} : f32[1,4,2,8]   // theta left at its default
  %o, %lse = attention(%q, %x, %x) : f32[1,4,2,8], f32[1,2,4]
  %n = rms_norm(%o, %o) {eps=1e-5} : f32[1,4,2,8]
  return out=%o
}
)";
  auto p = parse(text);
  // rms_norm's weight must be [8]: the error names the line and the operand.
  REQUIRE(!p.ok());
  CHECK(p.status().message() == "line 6:8: rms_norm operand 1 (f32[1,4,2,8]): expected f32[8] (the last axis of operand 0)");
  std::string fixed = text;
  fixed.replace(fixed.find("  %n ="), fixed.find("  return") - fixed.find("  %n ="), "");
  auto q = parse(fixed);
  REQUIRE(q.status().message() == "");
  const auto& rope = std::get<RopeAttrs>(q.value().nodes[0].attrs);
  CHECK(rope.theta == 10000.0f);
  CHECK(rope.inverse);
  CHECK(print(q.value()) ==
        "graph @hand(%x: f32[1,4,2,8]{S:shard(1)} input, %p: i32[1,4] input) {\n"
        "  %0 = rope(%x, %p) {theta=10000, inverse=true} : f32[1,4,2,8]\n"
        "  %1, %2 = attention(%0, %x, %x) {causal=true, scale=0, indexed=false} : f32[1,4,2,8], f32[1,2,4]\n"
        "  return out=%1\n"
        "}\n");
}

TEST_CASE("parse errors give the line, the column and what was expected") {
  const std::string head = "graph @g(%x: f32[2,4] input, %w: f32[4,4] param ones) {\n";
  auto err = [&](const std::string& body) {
    auto r = parse(head + body);
    REQUIRE(!r.ok());
    return r.status().message();
  };
  SECTION("unknown op") {
    CHECK(err("  %0 = matmull(%x, %w) : f32[2,4]\n  return y=%0\n}\n") ==
          "line 2:8: expected an op name, got 'matmull'");
  }
  SECTION("unknown attribute key for the op") {
    CHECK(err("  %0 = matmul(%x, %w) {trans=true} : f32[2,4]\n  return\n}\n") ==
          "line 2:24: expected an attribute of matmul (trans_a, trans_b), got 'trans'");
    CHECK(err("  %0 = add(%x, %x) {alpha=2} : f32[2,4]\n  return\n}\n") ==
          "line 2:21: expected no attributes (add takes none), got 'alpha'");
  }
  SECTION("wrong attribute value type") {
    CHECK(err("  %0 = matmul(%x, %w) {trans_a=1} : f32[2,4]\n  return\n}\n") ==
          "line 2:32: expected true or false for trans_a, got '1'");
    CHECK(err("  %0 = sum(%x) {axes=1} : f32[2]\n  return\n}\n") ==
          "line 2:22: expected a list like [0,2] for axes, got '1'");
    CHECK(err("  %0 = scale(%x) {scale=true} : f32[2,4]\n  return\n}\n") ==
          "line 2:25: expected a number for scale, got 'true'");
  }
  SECTION("undefined value") {
    CHECK(err("  %0 = add(%x, %foo) : f32[2,4]\n  return\n}\n") ==
          "line 2:16: expected a value defined above, got undefined value '%foo'");
    CHECK(err("  return y=%7\n}\n") == "line 2:12: expected a value defined above, got undefined value '%7'");
  }
  SECTION("redefinition") {
    CHECK(err("  %0 = silu(%x) : f32[2,4]\n  %0 = silu(%x) : f32[2,4]\n  return\n}\n") ==
          "line 3:3: expected a new value name (it is already defined at line 2:3), got '%0'");
    CHECK(parse("graph @g(%x: f32[2] input, %x: f32[2] input) {\n  return\n}\n").status().message() ==
          "line 1:28: expected a new value name (it is already defined at line 1:10), got '%x'");
  }
  SECTION("bad dtype and bad dimension") {
    CHECK(err("  %0 = silu(%x) : f33[2,4]\n  return\n}\n") ==
          "line 2:19: expected a dtype (f32, bf16, i32, i64), got 'f33'");
    CHECK(err("  %0 = silu(%x) : f32[2,-4]\n  return\n}\n") == "line 2:25: expected a non-negative dimension, got '-4'");
  }
  SECTION("missing closing brace") {
    CHECK(err("  %0 = silu(%x) : f32[2,4]\n  return y=%0\n") == "line 4:1: expected '}', got end of input");
  }
  SECTION("declared result type differs from the inferred one") {
    CHECK(err("  %0 = matmul(%x, %w) {trans_a=false, trans_b=true} : f32[2,3]\n  return\n}\n") ==
          "line 2:55: result %0 of matmul is declared f32[2,3] but inferred f32[2,4]");
  }
  SECTION("wrong number of results or result types") {
    CHECK(err("  %0 = attention(%x, %x, %x) : f32[2,4]\n  return\n}\n") ==
          "line 2:3: expected 2 result(s) for attention, got 1");
    CHECK(err("  %0 = silu(%x) : f32[2,4], f32[2,4]\n  return\n}\n") ==
          "line 2:19: expected 1 result type(s), got 2");
  }
  SECTION("shape inference errors name the line, the op and the operand") {
    CHECK(err("  %0 = matmul(%x, %x) : f32[2,4]\n  return\n}\n") ==
          "line 2:8: matmul operand 1 (f32[2,4]): expected a contraction dimension of 4");
    CHECK(err("  %0 = silu(%x, %x) : f32[2,4]\n  return\n}\n") == "line 2:8: silu: got 2 operands, expected 1");
  }
  SECTION("duplicate output names, bad sharding, bad init, trailing text") {
    CHECK(err("  return y=%x, y=%w\n}\n") == "line 2:16: expected a new output name, got 'y'");
    CHECK(parse("graph @g(%x: f32[2]{S:all} input) {\n  return\n}\n").status().message() ==
          "line 1:23: expected a sharding (rep, shard(D), partial), got 'all'");
    CHECK(parse("graph @g(%x: f32[2] param uniform) {\n  return\n}\n").status().message() ==
          "line 1:27: expected an init (zeros, ones, normal(STD)), got 'uniform'");
    CHECK(err("  return\n}\n}\n") == "line 4:1: expected end of input, got '}'");
    CHECK(parse("graph @g(%x: f32[2] input) {\n  %0 = silu(%x : f32[2]\n  return\n}\n").status().message() ==
          "line 2:16: expected ')', got ':'");
  }
}
