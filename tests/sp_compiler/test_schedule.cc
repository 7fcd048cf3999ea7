// The schedule pass: invariants on random and real programs (every collective is waited for
// after it starts, nothing reads its result before the wait, no buffer it uses is reused while
// it is in flight) and the overlap patterns it must produce.
#include <catch2/catch.hpp>
#include <random>

#include "core/log.h"
#include "ir/builder.h"
#include "models/model.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/lower.h"
#include "sp_compiler/offload_activations.h"
#include "sp_compiler/recompute.h"
#include "sp_compiler/shard_sequence.h"
#include "sp_compiler/zero_shard.h"
#include "tests/sp_compiler/small_llama.h"

using namespace autosp;

namespace {

int root(const ir::Program& p, int s) { return p.slots[s].kind == ir::Slot::Kind::alias ? p.slots[s].alias_of : s; }

int64_t bytes(const ir::Program& p, int s) {
  return p.slots[s].type.shape.numel() * int64_t(dtype_size(p.slots[s].type.dtype));
}

void check_invariants(const ir::Program& p) {
  const int n = int(p.instrs.size());
  std::vector<int> producer(p.slots.size(), -1);
  for (int i = 0; i < n; ++i) {
    const ir::Instr& ins = p.instrs[i];
    for (int s : ins.in) {
      const int d = producer[root(p, s)];
      REQUIRE((p.slots[root(p, s)].kind == ir::Slot::Kind::external || d >= 0));  // produced before use
      if (d < 0 || p.instrs[d].stream != ir::Stream::comm) continue;
      if (ins.stream == ir::Stream::compute) REQUIRE(i >= p.instrs[d].wait_before);  // read after the wait
    }
    for (int s : ins.out) producer[root(p, s)] = i;
    if (ins.stream != ir::Stream::comm) continue;
    REQUIRE(ins.wait_before > i);  // exactly one wait, after the start
    REQUIRE(ins.wait_before <= n);
    // No instruction between the start and the wait writes over the collective's buffers.
    for (int j = i + 1; j < ins.wait_before && j < n; ++j)
      for (int w : p.instrs[j].out) {
        const ir::Slot& ws = p.slots[root(p, w)];
        if (ws.kind != ir::Slot::Kind::arena) continue;
        for (int s : ins.in) {
          const ir::Slot& cs = p.slots[root(p, s)];
          if (cs.kind != ir::Slot::Kind::arena) continue;
          const bool overlap = ws.offset < cs.offset + bytes(p, root(p, s)) && cs.offset < ws.offset + bytes(p, root(p, w));
          REQUIRE_FALSE(overlap);
        }
        for (int s : ins.out) {
          const ir::Slot& cs = p.slots[root(p, s)];
          if (cs.kind != ir::Slot::Kind::arena || root(p, s) == root(p, w)) continue;
          const bool overlap = ws.offset < cs.offset + bytes(p, root(p, s)) && cs.offset < ws.offset + bytes(p, root(p, w));
          REQUIRE_FALSE(overlap);
        }
      }
  }
}

ir::Graph llama(int layers, int64_t heads = 4, DType dtype = DType::f32) {
  models::ModelConfig c;
  c.vocab_size = 32;
  c.d_model = 8 * heads;
  c.n_heads = heads;
  c.n_kv_heads = heads;
  c.ffn_hidden = 24;
  c.n_layers = layers;
  return models::build(c, {1, 16, true, dtype}).value();
}

ir::Program compile(ir::Graph g, int sp, const std::string& strategy, int zero, bool overlap) {
  REQUIRE(sp::make_shard_sequence_pass({1, sp, strategy})->run(g, {}).ok());
  REQUIRE(sp::make_autodiff_pass(sp)->run(g, {}).ok());
  REQUIRE(sp::make_zero_shard_pass({zero, sp, 64ll << 20})->run(g, {}).ok());
  return sp::lower(g, {overlap}).value();
}

int find(const ir::Program& p, const std::function<bool(const ir::Instr&)>& pred, int nth = 0) {
  for (int i = 0; i < int(p.instrs.size()); ++i)
    if (pred(p.instrs[i]) && nth-- == 0) return i;
  return -1;
}

bool reads(const ir::Program& p, const ir::Instr& ins, const std::string& name) {
  for (int s : ins.in)
    if (p.slots[s].name == name) return true;
  return false;
}

}  // namespace

TEST_CASE("schedule invariants hold on random programs", "[schedule]") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    ir::Graph g;
    ir::Builder b(g);
    std::vector<ir::ValueId> vals = {b.input("x", DType::f32, {4, 8}), b.input("y", DType::f32, {4, 8})};
    const int n_ops = 5 + int(rng() % 30);
    for (int k = 0; k < n_ops; ++k) {
      ir::ValueId a = vals[rng() % vals.size()], c = vals[rng() % vals.size()];
      switch (rng() % 6) {
        case 0: vals.push_back(b.silu(a)); break;
        case 1: vals.push_back(b.add(a, c)); break;
        case 2: vals.push_back(b.scale(a, 0.5f)); break;
        case 3: vals.push_back(b.op1(ir::Op::all_reduce, {a}, ir::GroupAttrs{ir::MeshGroup::world, 2})); break;
        case 4: vals.push_back(b.op1(ir::Op::all_to_all, {a}, ir::AllToAllAttrs{ir::MeshGroup::sp, 2, 1, 1})); break;
        default: vals.push_back(b.op1(ir::Op::send_recv, {a}, ir::SendRecvAttrs{ir::MeshGroup::sp, 2, 1})); break;
      }
    }
    for (int k = 0; k < 3; ++k) b.output("o" + std::to_string(k), vals[rng() % vals.size()]);
    b.output("last", vals.back());
    for (bool overlap : {true, false}) {
      ir::Program p = sp::lower(g, {overlap}).value();
      check_invariants(p);
      if (!overlap)
        for (const auto& ins : p.instrs) CHECK(ins.stream == ir::Stream::compute);
    }
  }
}

// Six layers, so gradient reductions are waited for before the step's end too; bf16 for its
// own buckets. One compile logs at verbosity 1 (lower's live-bytes peak reads every interval,
// and a collective waited for at the end ends one past the last instruction).
TEST_CASE("schedule invariants hold on real programs of every strategy and ZeRO stage", "[schedule]") {
  for (const char* strategy : {"ulysses", "ring", "hybrid"})
    for (int zero : {0, 1, 2, 3})
      for (DType dtype : {DType::f32, DType::bf16}) {
        DYNAMIC_SECTION(strategy << " zero " << zero << " " << dtype_name(dtype)) {
          const bool logged = zero == 2 && dtype == DType::bf16 && std::string(strategy) == "ulysses";
          const int verbosity = log_verbosity();
          if (logged) set_log_verbosity(1);
          const ir::Program p = compile(llama(6, 4, dtype), 4, strategy, zero, true);
          set_log_verbosity(verbosity);
          check_invariants(p);
        }
      }
}

TEST_CASE("schedule invariants hold with offloaded activations, and each fetch comes back late", "[schedule][offload]") {
  ir::Graph g = llama(3);
  REQUIRE(sp::make_shard_sequence_pass({1, 2, "ulysses"})->run(g, {}).ok());
  REQUIRE(sp::make_autodiff_pass(2)->run(g, {}).ok());
  REQUIRE(sp::make_recompute_pass(sp::RecomputePolicy::full)->run(g, {}).ok());
  REQUIRE(sp::make_zero_shard_pass({3, 2, 64ll << 20})->run(g, {}).ok());
  REQUIRE(sp::make_offload_activations_pass(/*min_bytes=*/0)->run(g, {}).ok());
  const ir::Program p = sp::lower(g, {true}).value();
  check_invariants(p);
  // Fetches are issued in the order the backward needs them, each only once compute reaches
  // the previous one's first use (no compute runs between a fetch and that point), so a
  // fetched copy does not sit on the device through the forward.
  std::vector<int> fetches;
  int last_offload = -1;
  for (int i = 0; i < int(p.instrs.size()); ++i) {
    if (p.instrs[i].op == ir::Op::fetch) fetches.push_back(i);
    if (p.instrs[i].op == ir::Op::offload) last_offload = i;
  }
  REQUIRE(fetches.size() >= 3);
  CHECK(fetches[0] > last_offload);
  for (size_t j = 1; j < fetches.size(); ++j)
    for (int k = fetches[j]; k < p.instrs[fetches[j - 1]].wait_before; ++k) CHECK(p.instrs[k].stream == ir::Stream::comm);
}

TEST_CASE("the in-flight budget is sized by repeated collectives, not a one-off larger one", "[schedule][zero]") {
  // ZeRO-3 with a vocabulary so large that the embedding's gather dwarfs every layer bucket.
  models::ModelConfig c = testing::small_llama(4, 4);
  c.vocab_size = 4096;
  c.n_layers = 6;
  const ir::Program p = compile(models::build(c, {1, 16, false}).value(), 2, "ulysses", 3, true);
  check_invariants(p);
  // The in-flight budget holds gathers back: the last layer's forward gather starts after
  // layer 1's attention, although the embedding gather's own size would have let every
  // layer's gather start at the step's beginning.
  auto gather = [&](int bucket) {
    return find(p, [&](const ir::Instr& i) {
      return i.op == ir::Op::all_gather && reads(p, i, "param_shard.bucket." + std::to_string(bucket));
    });
  };
  const int attention_layer1 = find(p, [](const ir::Instr& i) { return i.op == ir::Op::attention; }, 1);
  const int last_layer_gather = gather(6);  // bucket.0 is the embedding, bucket.k layer k-1
  REQUIRE(last_layer_gather >= 0);
  CHECK(last_layer_gather > attention_layer1);
}

TEST_CASE("Ulysses: Q's all_to_all starts after Q's projection and runs during K's and V's", "[schedule]") {
  const ir::Program p = compile(llama(1), 4, "ulysses", 0, true);
  const int k_proj = find(p, [&](const ir::Instr& i) { return reads(p, i, "model.layers.0.self_attn.k_proj.weight"); });
  const int v_proj = find(p, [&](const ir::Instr& i) { return reads(p, i, "model.layers.0.self_attn.v_proj.weight"); });
  const int q_a2a = find(p, [](const ir::Instr& i) { return i.op == ir::Op::all_to_all; });
  REQUIRE(k_proj >= 0);
  REQUIRE(q_a2a >= 0);
  CHECK(p.instrs[q_a2a].stream == ir::Stream::comm);
  CHECK(q_a2a < k_proj);                         // started before K is projected
  CHECK(p.instrs[q_a2a].wait_before > v_proj);   // and not waited for until V is projected
  // Backward mirrors it: the all_to_all of dO is waited for only at attention_backward.
  const int bwd = find(p, [](const ir::Instr& i) { return i.op == ir::Op::attention_backward; });
  const int do_a2a = find(p, [&](const ir::Instr& i) { return i.op == ir::Op::all_to_all; }, 4);
  CHECK(do_a2a < bwd);
  CHECK(p.instrs[do_a2a].wait_before == bwd);
}

TEST_CASE("gradients: the bucket of layer 1 is reduce-scattered while layer 0's backward computes", "[schedule]") {
  const ir::Program p = compile(llama(2), 2, "ulysses", 2, true);
  const int rs = find(p, [&](const ir::Instr& i) {
    return i.op == ir::Op::reduce_scatter && p.slots[i.out[0]].name == "grad_shard.bucket.2";
  });
  const int last_attention_bwd = find(p, [](const ir::Instr& i) { return i.op == ir::Op::attention_backward; }, 1);
  REQUIRE(rs >= 0);
  REQUIRE(last_attention_bwd >= 0);
  CHECK(p.instrs[rs].stream == ir::Stream::comm);
  CHECK(rs < last_attention_bwd);
  CHECK(p.instrs[rs].wait_before > last_attention_bwd);  // not waited for before it has overlapped it
}

// A reduction is waited for once the reductions started after it add up to twice its own
// bytes (at a later compute instruction), and not before an earlier one is due (the stream
// is FIFO), so its packed bucket is reused during the backward instead of staying alive to
// the step's end; never sooner, so the queue stays full.
TEST_CASE("gradients: a reduction is waited for once twice its bytes have followed it", "[schedule]") {
  const ir::Program p = compile(llama(6), 2, "ulysses", 2, true);
  check_invariants(p);
  const int n = int(p.instrs.size());
  std::vector<int> rs;
  for (int i = 0; i < n; ++i)
    if (p.instrs[i].op == ir::Op::reduce_scatter) rs.push_back(i);
  REQUIRE(rs.size() == 8);  // embedding, 6 layers, final norm + head
  int before_end = 0, due_before = 0;
  for (size_t j = 0; j < rs.size(); ++j) {
    // The reduction whose start brings what follows rs[j] to twice its bytes, after a compute step.
    int64_t after = 0;
    int due = n;
    for (size_t m = j + 1; m < rs.size() && due == n; ++m) {
      after += bytes(p, p.instrs[rs[m]].out[0]);
      bool compute_between = false;
      for (int k = rs[j] + 1; k < rs[m]; ++k) compute_between = compute_between || p.instrs[k].stream == ir::Stream::compute;
      if (after >= 2 * bytes(p, p.instrs[rs[j]].out[0]) && compute_between) due = rs[m];
    }
    due_before = std::max(due_before, due);
    INFO("reduction " << j << " at " << rs[j] << ", due after " << due_before << ", waited at " << p.instrs[rs[j]].wait_before);
    if (due_before == n) CHECK(p.instrs[rs[j]].wait_before == n);  // at the step's end
    if (due_before < n) {
      CHECK(p.instrs[rs[j]].wait_before > due_before);  // the first compute instruction after it
      for (int k = due_before + 1; k < p.instrs[rs[j]].wait_before; ++k) CHECK(p.instrs[k].stream == ir::Stream::comm);
      ++before_end;
    }
  }
  CHECK(before_end >= 4);  // the first layers' buckets, not only the end
}

// Stage 0 unpacks each reduced bucket into the parameters' gradients (the step's outputs):
// the unpack moves to where its reduction is waited for, so the reduced bucket is freed during
// the backward instead of every bucket staying alive to the end.
TEST_CASE("stage 0: a bucket's gradients are unpacked where its reduction is waited for", "[schedule]") {
  const ir::Program p = compile(llama(6), 2, "ulysses", 0, true);
  check_invariants(p);
  const int n = int(p.instrs.size());
  const int last_attention_bwd = find(p, [](const ir::Instr& i) { return i.op == ir::Op::attention_backward; }, 5);
  REQUIRE(last_attention_bwd >= 0);
  int unpacks = 0, early = 0;
  for (int i = 0; i < n; ++i) {
    const ir::Instr& ins = p.instrs[i];
    if (ins.op != ir::Op::unpack || p.slots[ins.out[0]].kind != ir::Slot::Kind::external) continue;
    ++unpacks;
    int reduction = -1;  // the all_reduce whose result it reads
    for (int j = 0; j < i; ++j)
      if (p.instrs[j].op == ir::Op::all_reduce && root(p, p.instrs[j].out[0]) == root(p, ins.in[0])) reduction = j;
    REQUIRE(reduction >= 0);
    INFO("unpack at " << i << ", its all_reduce at " << reduction << " waited at " << p.instrs[reduction].wait_before);
    CHECK(p.instrs[reduction].wait_before <= i);
    // Right after the wait: nothing but other unpacks and collectives' starts in between.
    for (int k = p.instrs[reduction].wait_before; k < i; ++k)
      CHECK((p.instrs[k].op == ir::Op::unpack || p.instrs[k].stream == ir::Stream::comm));
    early += i < last_attention_bwd;
  }
  CHECK(unpacks == 8);  // embedding, 6 layers, final norm + head
  CHECK(early >= 2);    // during the backward, not only at the end
}

TEST_CASE("ZeRO-3: the next bucket's parameters are gathered while this layer computes, not all at once",
          "[schedule]") {
  const ir::Program p = compile(llama(3), 2, "ulysses", 3, true);
  // The forward gather of a bucket: the first all_gather reading its shard (bucket.1 is layer 0).
  auto gather = [&](int bucket) {
    return find(p, [&](const ir::Instr& i) {
      return i.op == ir::Op::all_gather && reads(p, i, "param_shard.bucket." + std::to_string(bucket));
    });
  };
  const int embedding = find(p, [](const ir::Instr& i) { return i.op == ir::Op::embedding; });
  const int attention_layer0 = find(p, [](const ir::Instr& i) { return i.op == ir::Op::attention; });
  const int attention_layer1 = find(p, [](const ir::Instr& i) { return i.op == ir::Op::attention; }, 1);
  CHECK(gather(2) < attention_layer0);  // layer 1's parameters arrive while layer 0 computes
  CHECK(gather(3) > embedding);         // layer 2's are not fetched at the start of the step,
  CHECK(gather(3) < attention_layer1);  // but while layer 1 computes
  CHECK(p.instrs[gather(2)].stream == ir::Stream::comm);
}

TEST_CASE("without overlap the program keeps graph order on one stream", "[schedule]") {
  const ir::Program on = compile(llama(1), 2, "ulysses", 1, true);
  const ir::Program off = compile(llama(1), 2, "ulysses", 1, false);
  CHECK(on.instrs.size() == off.instrs.size());
  for (const auto& ins : off.instrs) CHECK(ins.stream == ir::Stream::compute);
  int comm = 0;
  for (const auto& ins : on.instrs) comm += ins.stream == ir::Stream::comm;
  CHECK(comm > 0);
}
