// Memory: recompute policies change memory, never numbers; the plan's activation arena is
// what the executor really touches; and --plan --max-seq finds a length that trains within
// the budget while 1.25x that length would not fit.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>

#include "runtime/comm.h"
#include "sp_equivalence.h"
#include "trainer/plan_report.h"

using namespace autosp;
using namespace autosp::testing;
using autosp::trainer::Options;
using autosp::trainer::Trainer;

namespace {

Options with(std::vector<std::string> sets) {
  sets.insert(sets.begin(), "model.n_layers=3");
  return sp_test_options(sets);
}

// One training step touches the planned activation arena: no more (the executor would write
// past it), and at least 95% (a plan much larger than the step's real peak wastes memory).
void check_arena_touched(const Options& o) {
  auto t = Trainer::create(o);
  REQUIRE(t.ok());
  REQUIRE(t.value()->train_step().ok());
  const int64_t planned = t.value()->memory_plan().train_arena;
  const int64_t touched = t.value()->train_executor().arena_high_water();
  INFO("planned " << planned << " bytes, touched " << touched);
  CHECK(touched <= planned);
  CHECK(double(touched) >= 0.95 * double(planned));
}

}  // namespace

TEST_CASE("recompute policies give bit-identical losses and gradients, with less activation memory",
          "[memory][recompute]") {
  const StepRecord none = record_single(with({"train.recompute=none"}), 3);
  int64_t previous_arena = INT64_MAX;
  for (const char* policy : {"none", "selective", "layer"}) {
    DYNAMIC_SECTION(policy) {
      const Options o = with({std::string("train.recompute=") + policy});
      const StepRecord r = record_single(o, 3);
      CHECK(r.losses == none.losses);  // the same kernels on the same inputs: exact
      CHECK(r.grads == none.grads);
      auto c = trainer::compile(o, 1);
      REQUIRE(c.ok());
      CHECK(c->train.arena_bytes < previous_arena);  // each policy keeps less
      previous_arena = c->train.arena_bytes;
    }
  }
}

TEST_CASE("recompute under sequence parallelism: numbers unchanged, collectives repeated by layer and full",
          "[memory][recompute]") {
  auto losses = [](const Options& o) {
    std::vector<double> out;
    runtime::run_local(2, [&](runtime::Communicator& c) {
      auto t = Trainer::create(o, "", &c);
      if (!t.ok()) throw std::runtime_error(t.status().message());
      std::string error;
      auto r = record_steps(*t.value(), 2, error);
      if (!error.empty()) throw std::runtime_error(error);
      if (c.rank() == 0) out = r.losses;
    });
    return out;
  };
  auto calls = [](const Options& o, const std::string& kind) {
    auto c = trainer::compile(o, 2);
    REQUIRE(c.ok());
    for (const auto& v : trainer::communication_per_step(c->train))
      if (v.kind == kind) return v.calls;
    return int64_t(0);
  };
  for (const char* strategy : {"ulysses", "ring"}) {
    DYNAMIC_SECTION(strategy) {
      const Options base = with({"parallel.sp=2", std::string("parallel.sp_strategy=") + strategy, "train.recompute=none"});
      const auto reference = losses(base);
      for (const char* policy : {"layer", "full"}) {
        Options o = base;
        o.train.recompute = policy;
        CHECK(losses(o) == reference);
      }
      Options layer = base, full = base;
      layer.train.recompute = "layer";
      full.train.recompute = "full";
      const std::string kind = std::string(strategy) == "ulysses" ? "all_to_all (sp)" : "ring_attention (sp)";
      Options selective = base;
      selective.train.recompute = "selective";
      CHECK(calls(selective, kind) == calls(base, kind));  // keeps every collective's result
      if (std::string(strategy) == "ulysses") {
        // "layer" re-runs O's all-to-all from the kept O (one per layer, 3 layers), "full" Q,
        // K, V and O's: 4 per layer.
        CHECK(calls(layer, kind) == calls(base, kind) + 3);
        // The repeats start in the backward: after every forward exchange of O has been read
        // (issued in the forward, their results would be held to the backward after all).
        auto c = trainer::compile(layer, 2);
        REQUIRE(c.ok());
        const auto& ins = c->train.instrs;
        std::map<std::vector<int>, int> first;  // input slots -> the first all-to-all reading them
        int originals_read = -1, repeats = 0, earliest_repeat = int(ins.size());
        for (int i = 0; i < int(ins.size()); ++i) {
          if (ins[size_t(i)].op != ir::Op::all_to_all) continue;
          auto [it, fresh] = first.try_emplace(ins[size_t(i)].in, i);
          if (!fresh) {
            ++repeats;
            earliest_repeat = std::min(earliest_repeat, i);
            const int out = c->train.root(ins[size_t(it->second)].out[0]);
            for (int j = it->second + 1; j < int(ins.size()); ++j)
              if (std::any_of(ins[size_t(j)].in.begin(), ins[size_t(j)].in.end(),
                              [&](int s) { return c->train.root(s) == out; })) {
                originals_read = std::max(originals_read, j);
                break;
              }
          }
        }
        CHECK(repeats == 3);
        CHECK(earliest_repeat > originals_read);
        CHECK(calls(full, kind) == calls(base, kind) + 4 * 3);
      } else {
        CHECK(calls(layer, kind) == calls(base, kind));
      }
    }
  }
}

TEST_CASE("the planned activation arena is what a training step touches (within 5%)", "[memory]") {
  for (const char* policy : {"none", "selective", "layer"})
    for (const char* seq : {"64", "256"}) {
      DYNAMIC_SECTION(policy << " seq_len " << seq) {
        check_arena_touched(with({std::string("train.recompute=") + policy, std::string("train.seq_len=") + seq}));
      }
    }
}

// --plan's "activation peak": the most bytes alive at one instruction (no placement does
// better, so at most the arena), and the tensors alive there grouped by the op that made them,
// largest first. Each tensor is counted once and rounded up by at most the arena's 64-byte
// alignment, so the groups add up to the peak within that.
TEST_CASE("the activation peak report adds up to the bytes alive at the arena's peak", "[memory][plan]") {
  for (const char* policy : {"none", "full"}) {
    DYNAMIC_SECTION(policy) {
      const Options o = with({std::string("train.recompute=") + policy, "train.seq_len=256"});
      auto c = trainer::compile(o, 1);
      REQUIRE(c.ok());
      const trainer::ArenaPeakReport r = trainer::arena_peak_report(c.value().train);
      REQUIRE(r.at >= 0);
      CHECK(r.at < r.instructions);
      CHECK(r.bytes <= c.value().train.arena_bytes);
      CHECK(r.bytes >= c.value().train.arena_bytes * 3 / 4);  // greedy placement comes close
      int64_t sum = 0, tensors = 0;
      for (size_t i = 0; i < r.groups.size(); ++i) {
        sum += r.groups[i].count * r.groups[i].bytes_each;
        tensors += r.groups[i].count;
        if (i > 0)
          CHECK(r.groups[i].count * r.groups[i].bytes_each <= r.groups[i - 1].count * r.groups[i - 1].bytes_each);
      }
      CHECK(sum <= r.bytes);
      CHECK(sum + 64 * tensors >= r.bytes);
    }
  }
}

TEST_CASE("the longest planned seq_len trains within the budget and 1.25x of it does not fit", "[memory]") {
  Options o = with({"train.recompute=auto", "train.batch_size=1"});
  const int64_t budget = 48ll << 20;  // 48 MiB per rank
  auto longest = trainer::longest_seq_len(o, 1, budget);
  REQUIRE(longest.ok());
  REQUIRE(longest.value() >= 256);
  INFO("longest seq_len " << longest.value());
  o.train.seq_len = longest.value();
  o.model.max_seq_len = longest.value() * 2;
  o.train.memory_gib = double(budget) / double(1ll << 30);
  auto t = Trainer::create(o);
  REQUIRE(t.ok());
  REQUIRE(t.value()->train_step().ok());
  const auto& m = t.value()->memory_plan();
  CHECK(m.total() <= budget);
  CHECK(m.params + m.grads + m.optimizer + t.value()->train_executor().arena_high_water() <= budget);
  Options longer = o;
  longer.train.seq_len = longest.value() * 5 / 4;
  auto c = trainer::compile(longer, 1);
  REQUIRE(c.ok());
  CHECK(trainer::memory_plan(c.value()).total() > budget);
}

TEST_CASE("chunking the MLP over the sequence keeps the numbers and shrinks the working set", "[memory][chunk]") {
  const StepRecord whole = record_single(with({"train.recompute=full", "train.mlp_chunks=1"}), 2);
  for (const char* chunks : {"3", "8"}) {
    DYNAMIC_SECTION(chunks << " chunks") {
      const Options o = with({"train.recompute=full", std::string("train.mlp_chunks=") + chunks});
      const StepRecord r = record_single(o, 2);
      // Per token the same arithmetic; weight gradients become sums over slices, in another
      // order: the SP tolerance applies (sp_equivalence.h).
      CHECK(compare_records(whole, r, 1e-5) == "");
    }
  }
  // At a longer sequence the slices' intermediates are what the backward holds at once.
  auto arena = [](const char* chunks) {
    auto c = trainer::compile(with({"train.recompute=full", "train.seq_len=1024", "model.max_seq_len=1024",
                                    "model.ffn_hidden=512", std::string("train.mlp_chunks=") + chunks}),
                              1);
    REQUIRE(c.ok());
    return c->train.arena_bytes;
  };
  CHECK(arena("8") < arena("1"));
}

// With one row the slices are consecutive byte ranges: lower makes the split's slices views of
// the MLP input and writes the slices' outputs in place into the concatenated result (and the
// same for their gradients), so no split is left and no concat copies a part already in place.
TEST_CASE("one row's MLP slices are views and concatenate in place", "[memory][chunk]") {
  const StepRecord whole = record_single(with({"train.recompute=full", "train.mlp_chunks=1", "train.batch_size=1"}), 2);
  for (const char* chunks : {"2", "3"}) {
    DYNAMIC_SECTION(chunks << " chunks") {
      const Options o = with({"train.recompute=full", "train.batch_size=1", std::string("train.mlp_chunks=") + chunks});
      CHECK(compare_records(whole, record_single(o, 2), 1e-5) == "");
      auto c = trainer::compile(o, 1);
      REQUIRE(c.ok());
      int splits = 0, concats = 0, in_place = 0;
      for (const ir::Instr& ins : c->train.instrs) {
        splits += ins.op == ir::Op::split;
        if (ins.op != ir::Op::concat) continue;
        ++concats;
        for (int part : ins.in) in_place += c->train.root(part) == ins.out[0];
      }
      CHECK(splits == 0);
      CHECK(concats > 0);
      CHECK(in_place > 0);
      check_arena_touched(o);  // the plan is still what a step touches
    }
  }
  // Under SP too (each rank's slices of its shard are views): the same numbers as one process
  // with the MLP whole, for each strategy and the policies below full.
  for (const char* strategy : {"ulysses", "ring"})
    for (const char* policy : {"selective", "layer"}) {
      DYNAMIC_SECTION("sp 2 " << strategy << " " << policy) {
        const Options o = with({"parallel.sp=2", std::string("parallel.sp_strategy=") + strategy, "train.batch_size=1",
                                std::string("train.recompute=") + policy, "train.mlp_chunks=2"});
        Options one = o;
        one.parallel.sp = 1;
        one.train.mlp_chunks = 1;
        const StepRecord reference = record_single(one, 2);
        for (const StepRecord& r : record_local(o, 2, 2)) CHECK(compare_records(reference, r, 1e-5) == "");
      }
    }
  // Two rows: a slice is strided, so the split copies.
  auto c = trainer::compile(with({"train.recompute=full", "train.mlp_chunks=2"}), 1);
  REQUIRE(c.ok());
  CHECK(std::any_of(c->train.instrs.begin(), c->train.instrs.end(),
                    [](const ir::Instr& ins) { return ins.op == ir::Op::split; }));
}

TEST_CASE("auto chunks the MLP only when no unchunked policy fits the budget", "[memory][chunk]") {
  Options o = with({"train.recompute=auto", "train.seq_len=1024", "model.max_seq_len=1024", "model.ffn_hidden=512"});
  auto unlimited = trainer::compile(o, 1);
  REQUIRE(unlimited.ok());
  CHECK(unlimited->mlp_chunks == 1);
  // A budget just under every unchunked policy's plan (full recompute re-runs attention, so
  // on a 2-layer model it need not be the smallest): auto must chunk to fit.
  int64_t smallest = INT64_MAX;
  for (const char* p : {"none", "selective", "layer", "full"}) {
    o.train.recompute = p;
    o.train.mlp_chunks = 1;
    auto c = trainer::compile(o, 1);
    REQUIRE(c.ok());
    smallest = std::min(smallest, trainer::memory_plan(c.value()).total());
  }
  o.train.recompute = "auto";
  o.train.mlp_chunks = 0;
  o.train.memory_gib = double(smallest - 1) / double(1ll << 30);
  auto tight = trainer::compile(o, 1);
  REQUIRE(tight.ok());
  INFO(tight->recompute_reason);
  CHECK((tight->recompute == sp::RecomputePolicy::layer || tight->recompute == sp::RecomputePolicy::full));
  CHECK(tight->mlp_chunks > 1);
  CHECK(trainer::memory_plan(tight.value()).total() <= int64_t(o.train.memory_gib * double(1ll << 30)));
}
