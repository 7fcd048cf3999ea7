#include <catch2/catch.hpp>

#include <cmath>

#include "ir/builder.h"
#include "models/model.h"
#include "runtime/executor.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/lower.h"

using namespace autosp;

namespace {
ir::Program lowered_llama() {
  models::ModelConfig c;
  c.vocab_size = 64;
  c.d_model = 32;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.ffn_hidden = 48;
  c.n_layers = 3;
  ir::Graph g = models::build(c, {2, 16, false}).value();
  REQUIRE(sp::make_autodiff_pass()->run(g, {}).ok());
  return sp::lower(g).value();
}
}  // namespace

TEST_CASE("arena tensors that are alive at the same time never share bytes", "[lower]") {
  ir::Program p = lowered_llama();
  const int n = int(p.slots.size());
  auto root = [&](int s) { return p.slots[s].kind == ir::Slot::Kind::alias ? p.slots[s].alias_of : s; };
  std::vector<int> first(n, -1), last(n, -1);
  for (int i = 0; i < int(p.instrs.size()); ++i) {
    for (int s : p.instrs[i].out) {
      if (first[root(s)] < 0) first[root(s)] = i;
      last[root(s)] = std::max(last[root(s)], i);
    }
    for (int s : p.instrs[i].in) last[root(s)] = std::max(last[root(s)], i);
  }
  int64_t total = 0;
  for (int a = 0; a < n; ++a) {
    const auto& sa = p.slots[a];
    if (sa.kind != ir::Slot::Kind::arena || first[a] < 0) continue;
    const int64_t ea = sa.offset + sa.type.shape.numel() * 4;
    CHECK(ea <= p.arena_bytes);
    total += sa.type.shape.numel() * 4;
    for (int b = a + 1; b < n; ++b) {
      const auto& sb = p.slots[b];
      if (sb.kind != ir::Slot::Kind::arena || first[b] < 0) continue;
      const bool time_overlap = first[a] <= last[b] && first[b] <= last[a];
      const bool byte_overlap = sa.offset < sb.offset + sb.type.shape.numel() * 4 && sb.offset < ea;
      if (time_overlap && byte_overlap) FAIL("slots " << a << " and " << b << " overlap while both alive");
    }
  }
  // Reuse must actually happen: three layers' worth of activations share space.
  CHECK(p.arena_bytes < total);
}

TEST_CASE("lowering removes dead nodes, turns reshapes into views and binds outputs", "[lower]") {
  ir::Graph g;
  ir::Builder b(g);
  ir::ValueId x = b.input("x", DType::f32, {2, 6});
  b.scale(x, 3.0f);  // dead: feeds no output
  ir::ValueId y = b.reshape(b.silu(x), {3, 4});
  b.output("out", b.scale(y, 2.0f));
  b.output("x_again", x);  // an argument as an output: copied into its own buffer
  ir::Program p = sp::lower(g).value();
  REQUIRE(p.instrs.size() == 3);  // silu, scale, copy
  CHECK(p.instrs[0].op == ir::Op::silu);
  CHECK(p.instrs[1].op == ir::Op::scale);
  CHECK(p.slots[p.instrs[1].in[0]].kind == ir::Slot::Kind::alias);
  CHECK(p.instrs[2].op == ir::Op::reshape);
  CHECK(p.find_external("out") == p.instrs[1].out[0]);
  CHECK(p.outputs.size() == 2);
}

// A ZeRO bucket holding one tensor that needs no padding (one large matrix) is that tensor:
// its pack would only copy it, doubling its bytes where the copy is made. With padding, or
// several tensors, the pack stays.
TEST_CASE("the pack of one tensor that needs no padding is a view of it", "[lower]") {
  for (int64_t padded : {12, 16}) {
    ir::Graph g;
    ir::Builder b(g);
    const ir::ValueId x = b.input("x", DType::f32, {2, 6});
    const ir::ValueId y = b.silu(x);
    b.output("out", b.op1(ir::Op::all_reduce, {b.op1(ir::Op::pack, {y}, ir::PackAttrs{padded})},
                          ir::GroupAttrs{ir::MeshGroup::world, 2}));
    const ir::Program p = sp::lower(g).value();
    int packs = 0, reduce = -1;
    for (int i = 0; i < int(p.instrs.size()); ++i) {
      packs += p.instrs[i].op == ir::Op::pack;
      if (p.instrs[i].op == ir::Op::all_reduce) reduce = i;
    }
    REQUIRE(reduce >= 0);
    INFO("padded " << padded);
    CHECK(packs == (padded == 12 ? 0 : 1));
    const ir::Slot& in = p.slots[p.instrs[reduce].in[0]];
    CHECK((in.kind == ir::Slot::Kind::alias && in.alias_of == p.instrs[0].out[0]) == (padded == 12));
  }
}

// A pack's parts that die there are written in place: each becomes a view of its place in
// the packed buffer (no copy, no second set of bytes at the pack); a part still read after
// the pack keeps its own buffer and is copied.
TEST_CASE("a pack's parts that die there are written in its buffer", "[lower]") {
  ir::Graph g;
  ir::Builder b(g);
  const ir::ValueId x = b.input("x", DType::f32, {2, 6});
  const ir::ValueId dies = b.silu(x), stays = b.scale(x, 2.0f), also_dies = b.gelu(x);
  const ir::ValueId packed = b.op1(ir::Op::pack, {dies, stays, also_dies}, ir::PackAttrs{40});
  b.output("out", b.op1(ir::Op::all_reduce, {packed}, ir::GroupAttrs{ir::MeshGroup::world, 2}));
  b.output("later", b.scale(stays, 3.0f));  // read after the pack
  const ir::Program p = sp::lower(g).value();
  int pack = -1;
  for (int i = 0; i < int(p.instrs.size()); ++i)
    if (p.instrs[i].op == ir::Op::pack) pack = i;
  REQUIRE(pack >= 0);
  const ir::Instr& ins = p.instrs[pack];
  const int buffer = ins.out[0];
  auto in_place = [&](int k, int64_t offset) {
    const ir::Slot& s = p.slots[ins.in[k]];
    return s.kind == ir::Slot::Kind::alias && s.alias_of == buffer && s.alias_offset == offset;
  };
  CHECK(in_place(0, 0));
  CHECK_FALSE(p.slots[ins.in[1]].kind == ir::Slot::Kind::alias);
  CHECK(in_place(2, 2 * 12 * 4));
  CHECK(p.arena_bytes >= 40 * 4);
}

TEST_CASE("a fused matmul accumulates in place over an operand that dies there, and only then", "[lower]") {
  ir::Graph g;
  ir::Builder b(g);
  const ir::ValueId a = b.input("a", DType::f32, {2, 3}), w = b.input("w", DType::f32, {3, 3});
  auto fused = [&](ir::ValueId x_in, ir::ValueId x) {
    return b.op1(ir::Op::matmul, {x_in, w, x}, ir::MatmulAttrs{false, false});
  };
  const ir::ValueId dies = b.silu(a), kept = b.scale(a, 2.0f), also_a = b.scale(a, 3.0f);
  const ir::ValueId y0 = fused(a, dies);             // in place: silu(a) is read here last
  const ir::ValueId y1 = fused(a, kept);             // not: kept is read again below
  const ir::ValueId y2 = fused(also_a, also_a);      // not: X is also the GEMM's A
  b.output("out", b.add(b.add(y0, y1), b.add(y2, b.silu(kept))));
  ir::Program p = sp::lower(g).value();
  auto slot_of_output = [&](int k) { return p.slots[p.instrs[size_t(k)].out[0]]; };
  std::vector<int> fused_at;
  for (int i = 0; i < int(p.instrs.size()); ++i)
    if (p.instrs[i].op == ir::Op::matmul) fused_at.push_back(i);
  REQUIRE(fused_at.size() == 3);
  CHECK(slot_of_output(fused_at[0]).kind == ir::Slot::Kind::alias);
  CHECK(slot_of_output(fused_at[0]).alias_of == p.instrs[size_t(fused_at[0])].in[2]);
  CHECK(slot_of_output(fused_at[1]).kind == ir::Slot::Kind::arena);
  CHECK(slot_of_output(fused_at[2]).kind == ir::Slot::Kind::arena);

  // And the in-place result is x + a·w: out = silu(a) + a·w + 2a + a·w + 3a + (3a)·w + silu(2a).
  auto backend = runtime::make_cpu_backend();
  runtime::Executor ex(std::move(p), *backend);
  const std::vector<float> av{0.5f, -1.0f, 2.0f, 0.25f, 1.5f, -0.75f}, wv{1, 2, 0, -1, 0.5f, 1, 0, 1, -2};
  std::copy(av.begin(), av.end(), ex.tensor("a").data<float>());
  std::copy(wv.begin(), wv.end(), ex.tensor("w").data<float>());
  REQUIRE(ex.run().ok());
  auto silu = [](double v) { return v / (1 + std::exp(-v)); };
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c) {
      double aw = 0;
      for (int k = 0; k < 3; ++k) aw += av[size_t(r * 3 + k)] * wv[size_t(k * 3 + c)];
      const double x = av[size_t(r * 3 + c)];
      const double want = silu(x) + aw + 2 * x + aw + 3 * x + 3 * aw + silu(2 * x);
      CHECK(ex.tensor("out").data<float>()[r * 3 + c] == Approx(want).epsilon(1e-5));
    }
}
