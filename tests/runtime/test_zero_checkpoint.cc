// Sharded (ZeRO) checkpoints: every world size writes shards that load back as the exact
// full tensors; both formats load through load_train_state and export to one file; a
// checkpoint re-shards for another world size; a failure on any rank fails the save on every
// rank and leaves the previous checkpoint; keep-N counts both formats; a broken checkpoint
// is refused with an error naming the file.
//
// Catch2 assertions are not thread safe: rank threads only record results, checked after
// run_local returns.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/checkpoint.h"
#include "runtime/zero_checkpoint.h"
#include "tests/test_util.h"

using namespace autosp;
using namespace autosp::runtime;
namespace fs = std::filesystem;

namespace {

using testing::fresh_dir;

// Parameters of odd sizes, so most buckets need padding; bucket.3 holds one element, so with
// P > 1 some ranks own nothing but padding there.
struct ParamDef {
  std::string name;
  Shape shape;
};
const std::vector<std::vector<ParamDef>> kBuckets = {
    {{"model.embed_tokens.weight", {7, 3}}, {"model.layers.0.input_layernorm.weight", {5}}},  // 26
    {{"model.layers.0.self_attn.q_proj.weight", {3, 3}}},                                     // 9
    {{"model.norm.weight", {5}}, {"lm_head.weight", {7, 3}}, {"lm_head.bias", {1}}},          // 27 + a gap
    {{"scale", {}}},                                                                          // 1
};

// The plan a ZeRO run with `world` ranks would make: packed in order, padded to a multiple of
// the world size. Bucket 2 leaves a one-element gap between its first two parameters, so
// offsets (not packing order) are what the loader must follow.
ir::BucketPlan make_plan(int world, int stage = 2) {
  ir::BucketPlan plan;
  plan.world = world;
  plan.stage = stage;
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    ir::Bucket b;
    b.name = "bucket." + std::to_string(i);
    for (const ParamDef& p : kBuckets[i]) {
      if (i == 2 && p.name == "lm_head.weight") b.numel += 1;
      b.params.push_back({p.name, p.shape, ir::Init{ir::Init::Kind::normal, 0.02f}, b.numel});
      b.numel += p.shape.numel();
    }
    b.padded = (b.numel + world - 1) / world * world;
    plan.buckets.push_back(std::move(b));
  }
  return plan;
}

Tensor ramp(const Shape& s, float start) {
  Tensor t = Tensor::zeros(DType::f32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = start + float(i) * 0.25f;
  return t;
}

// Full per-parameter tensors with values distinct across parameters and kinds.
TrainState make_full(float base) {
  TrainState s;
  float start = base;
  for (const auto& bucket : kBuckets)
    for (const ParamDef& p : bucket) {
      s.params.emplace_back(p.name, ramp(p.shape, start));
      s.exp_avg.emplace_back(p.name, ramp(p.shape, start + 1000.0f));
      s.exp_avg_sq.emplace_back(p.name, ramp(p.shape, start + 2000.0f));
      start += 100.0f;
    }
  s.state = {{"data_step", 7}, {"seed", 1234}, {"config", {{"train", {{"lr", 0.003}}}}}};
  return s;
}

// Rank `rank`'s shards, built independently of the code under test: lay the bucket out flat
// (gaps and padding = `fill`), cut [rank·S, (rank+1)·S).
RankShards slice(const ir::BucketPlan& plan, const TrainState& full, int rank, float fill) {
  RankShards out;
  const NamedTensors* ins[3] = {&full.params, &full.exp_avg, &full.exp_avg_sq};
  std::vector<Tensor>* outs[3] = {&out.param, &out.exp_avg, &out.exp_avg_sq};
  for (const ir::Bucket& b : plan.buckets)
    for (int k = 0; k < 3; ++k) {
      std::vector<float> flat(size_t(b.padded), fill);
      for (const ir::BucketEntry& e : b.params)
        for (const auto& [name, t] : *ins[k])
          if (name == e.name)
            for (int64_t i = 0; i < t.numel(); ++i) flat[size_t(e.offset + i)] = t.data<float>()[i];
      const int64_t S = plan.shard_numel(b);
      Tensor shard = Tensor::zeros(DType::f32, Shape{S});
      for (int64_t i = 0; i < S; ++i) shard.data<float>()[i] = flat[size_t(rank * S + i)];
      outs[k]->push_back(shard);
    }
  return out;
}

bool same_tensors(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.dtype() != b[i].second.dtype() ||
        a[i].second.shape() != b[i].second.shape() ||
        std::memcmp(a[i].second.raw(), b[i].second.raw(), a[i].second.nbytes()) != 0)
      return false;
  return true;
}

bool same_shards(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].shape() != b[i].shape() || std::memcmp(a[i].raw(), b[i].raw(), a[i].nbytes()) != 0) return false;
  return true;
}

using testing::dir_entries;

// Every rank saves its slice of `full` (padding filled with a sentinel, which the loader must
// drop); returns each rank's status.
std::vector<Status> save_all(const fs::path& root, int64_t step, const ir::BucketPlan& plan, const TrainState& full,
                             int keep) {
  std::vector<Status> st(size_t(plan.world));
  run_local(plan.world, [&](Communicator& c) {
    RankShards mine = slice(plan, full, c.rank(), -999.0f);
    st[size_t(c.rank())] = save_sharded_checkpoint(c, root.string(), step, plan, mine, full.state, keep);
  });
  return st;
}

bool all_ok(const std::vector<Status>& st) {
  for (const Status& s : st)
    if (!s.ok()) return false;
  return true;
}

// The full state as the single-writer trainer saves it.
Checkpoint single_writer(const TrainState& full) {
  Checkpoint c;
  for (size_t i = 0; i < full.params.size(); ++i) {
    const std::string& n = full.params[i].first;
    c.model.emplace_back(n, full.params[i].second);
    c.optimizer.emplace_back(n + ".exp_avg", full.exp_avg[i].second);
    c.optimizer.emplace_back(n + ".exp_avg_sq", full.exp_avg_sq[i].second);
  }
  c.state = full.state;
  return c;
}

void check_equal_state(const TrainState& got, const TrainState& want) {
  CHECK(same_tensors(got.params, want.params));
  CHECK(same_tensors(got.exp_avg, want.exp_avg));
  CHECK(same_tensors(got.exp_avg_sq, want.exp_avg_sq));
  CHECK(got.state == want.state);
}

}  // namespace

TEST_CASE("a sharded checkpoint from P ranks loads back as the exact full tensors", "[zero_checkpoint]") {
  const int P = GENERATE(1, 2, 3);
  INFO("P = " << P);
  auto root = fresh_dir("zc_roundtrip_" + std::to_string(P));
  const TrainState full = make_full(1.0f);
  const ir::BucketPlan plan = make_plan(P);
  REQUIRE(all_ok(save_all(root, 120, plan, full, 3)));

  CHECK(dir_entries(root) == std::vector<std::string>{"step_00000120"});
  std::vector<std::string> files = {"state.json", "zero_index.json"};
  for (int r = 0; r < P; ++r) files.push_back("shard_rank" + std::to_string(r) + ".safetensors");
  std::sort(files.begin(), files.end());
  CHECK(dir_entries(root / "step_00000120") == files);
  auto latest = latest_checkpoint(root.string());
  REQUIRE(latest.ok());
  CHECK(*latest == (root / "step_00000120").string());

  for (auto path : {root / "step_00000120", root}) {  // a step dir, or the root (newest)
    auto r = load_train_state(path.string());
    REQUIRE(r.ok());
    CHECK(r->step == 120);
    CHECK(r->path == (root / "step_00000120").string());
    check_equal_state(*r, full);
  }
}

TEST_CASE("a single-writer checkpoint loads through load_train_state", "[zero_checkpoint]") {
  auto root = fresh_dir("zc_single");
  const TrainState full = make_full(5.0f);
  REQUIRE(save_checkpoint(root.string(), 40, single_writer(full), 2).ok());
  auto r = load_train_state(root.string());
  REQUIRE(r.ok());
  CHECK(r->step == 40);
  CHECK(r->path == (root / "step_00000040").string());
  check_equal_state(*r, full);
}

TEST_CASE("a checkpoint saved by 3 ranks re-shards for 2 ranks and back to the same full state", "[zero_checkpoint]") {
  auto root3 = fresh_dir("zc_reshard3"), root2 = fresh_dir("zc_reshard2");
  const TrainState full = make_full(3.0f);
  REQUIRE(all_ok(save_all(root3, 10, make_plan(3, /*stage=*/3), full, 2)));
  auto loaded = load_train_state(root3.string());
  REQUIRE(loaded.ok());
  check_equal_state(*loaded, full);

  // Shards for a 2-rank stage-1 run, cut from the loaded full view, equal the independent
  // slicing of the original tensors (padding zero).
  const ir::BucketPlan plan2 = make_plan(2, /*stage=*/1);
  std::vector<RankShards> shards;
  for (int r = 0; r < 2; ++r) {
    auto s = shard_train_state(*loaded, plan2, r);
    REQUIRE(s.ok());
    RankShards want = slice(plan2, full, r, 0.0f);
    CHECK(same_shards(s->param, want.param));
    CHECK(same_shards(s->exp_avg, want.exp_avg));
    CHECK(same_shards(s->exp_avg_sq, want.exp_avg_sq));
    shards.push_back(std::move(*s));
  }
  std::vector<Status> st(2);
  run_local(2, [&](Communicator& c) {
    st[size_t(c.rank())] =
        save_sharded_checkpoint(c, root2.string(), 11, plan2, shards[size_t(c.rank())], loaded->state, 2);
  });
  REQUIRE(all_ok(st));
  auto again = load_train_state(root2.string());
  REQUIRE(again.ok());
  CHECK(again->step == 11);
  check_equal_state(*again, full);
}

TEST_CASE("shard_train_state refuses a checkpoint that does not match the run's parameters", "[zero_checkpoint]") {
  TrainState full = make_full(1.0f);
  full.path = "ckpt/step_1";
  const ir::BucketPlan plan = make_plan(2);

  TrainState missing = full;
  missing.exp_avg.erase(missing.exp_avg.begin() + 1);
  auto r = shard_train_state(missing, plan, 0);
  REQUIRE(!r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("model.layers.0.input_layernorm.weight") &&
                                       Catch::Contains("exp_avg") && Catch::Contains("ckpt/step_1"));

  TrainState reshaped = full;
  reshaped.params[0].second = ramp({3, 7}, 0.0f);
  r = shard_train_state(reshaped, plan, 1);
  REQUIRE(!r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("model.embed_tokens.weight") && Catch::Contains("[3,7]"));

  TrainState extra = full;
  extra.params.emplace_back("unused.weight", ramp({2}, 0.0f));
  r = shard_train_state(extra, plan, 0);
  REQUIRE(!r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("unused.weight"));
}

TEST_CASE("export_consolidated writes the parameters of either format as one HF safetensors file",
          "[zero_checkpoint]") {
  auto root = fresh_dir("zc_export");
  const TrainState full = make_full(2.0f);
  REQUIRE(all_ok(save_all(root / "sharded", 30, make_plan(3), full, 2)));
  REQUIRE(save_checkpoint((root / "single").string(), 30, single_writer(full), 2).ok());
  for (const char* fmt : {"sharded", "single"}) {
    INFO(fmt);
    const std::string out = (root / (std::string(fmt) + ".safetensors")).string();
    REQUIRE(export_consolidated((root / fmt).string(), out).ok());
    auto f = read_safetensors(out);
    REQUIRE(f.ok());
    CHECK(same_tensors(f->tensors, full.params));
    CHECK(f->metadata == std::map<std::string, std::string>{{"format", "pt"}});
  }
  auto missing = export_consolidated((root / "nowhere").string(), (root / "x.safetensors").string());
  CHECK(!missing.ok());
  CHECK(!fs::exists(root / "x.safetensors"));
}

TEST_CASE("a shard write failing on one rank fails the save on every rank and keeps the previous checkpoint",
          "[zero_checkpoint]") {
  auto root = fresh_dir("zc_fault_rank");
  const ir::BucketPlan plan = make_plan(3);
  const TrainState good = make_full(1.0f), next = make_full(9.0f);
  REQUIRE(all_ok(save_all(root, 100, plan, good, 2)));
  for (int bad : {0, 1, 2}) {
    INFO("failing rank " << bad);
    set_zero_checkpoint_fault_rank(bad);
    std::vector<Status> st = save_all(root, 200, plan, next, 2);
    set_zero_checkpoint_fault_rank(-1);
    for (const Status& s : st) {
      CHECK(s.code() == StatusCode::io_error);
      CHECK(s.message() == st[0].message());  // every rank reports the same failure
    }
    CHECK_THAT(st[0].message(), Catch::Contains("step 200") && Catch::Contains("rank " + std::to_string(bad)) &&
                                    Catch::Contains("shard_rank" + std::to_string(bad) + ".safetensors") &&
                                    Catch::Contains("No space left on device"));
    CHECK(dir_entries(root) == std::vector<std::string>{"step_00000100"});  // no new step, no temp dir
    auto r = load_train_state(root.string());
    REQUIRE(r.ok());
    CHECK(r->step == 100);
    check_equal_state(*r, good);
  }
  REQUIRE(all_ok(save_all(root, 200, plan, next, 2)));
  CHECK(load_train_state(root.string())->step == 200);
}

TEST_CASE("a write failing at any byte of a sharded save leaves the previous checkpoint and no temp dir",
          "[zero_checkpoint]") {
  // One rank, so the process-wide byte budget is deterministic: it covers the shard, then
  // rank 0's index and state.
  auto root = fresh_dir("zc_fault_bytes");
  const ir::BucketPlan plan = make_plan(1);
  const TrainState good = make_full(1.0f);
  REQUIRE(all_ok(save_all(root, 100, plan, good, 2)));
  int64_t total = 0;
  for (const auto& e : fs::directory_iterator(root / "step_00000100")) total += int64_t(e.file_size());
  const int64_t shard = int64_t(fs::file_size(root / "step_00000100" / "shard_rank0.safetensors"));
  for (int64_t budget : {int64_t(0), int64_t(7), shard / 2, shard, shard + 10, total - 20, total - 1}) {
    INFO("fault after " << budget << " of " << total << " bytes");
    set_checkpoint_write_fault_after_bytes(budget);
    std::vector<Status> st = save_all(root, 200, plan, make_full(9.0f), 2);
    set_checkpoint_write_fault_after_bytes(-1);
    REQUIRE(!st[0].ok());
    CHECK(st[0].code() == StatusCode::io_error);
    CHECK_THAT(st[0].message(), Catch::Contains("step 200") && Catch::Contains("No space left on device"));
    CHECK(dir_entries(root) == std::vector<std::string>{"step_00000100"});
    auto r = load_train_state(root.string());
    REQUIRE(r.ok());
    CHECK(r->step == 100);
    check_equal_state(*r, good);
  }
}

TEST_CASE("shards that do not match the plan fail the save on every rank before any file is written",
          "[zero_checkpoint]") {
  auto root = fresh_dir("zc_bad_shards");
  const ir::BucketPlan plan = make_plan(2);
  const TrainState full = make_full(1.0f);
  std::vector<Status> st(2);
  run_local(2, [&](Communicator& c) {
    RankShards mine = slice(plan, full, c.rank(), 0.0f);
    if (c.rank() == 1) mine.exp_avg[1] = Tensor::zeros(DType::f32, Shape{3});
    st[size_t(c.rank())] = save_sharded_checkpoint(c, root.string(), 5, plan, mine, full.state, 2);
  });
  for (const Status& s : st) {
    CHECK(s.code() == StatusCode::invalid_argument);
    CHECK_THAT(s.message(), Catch::Contains("rank 1") && Catch::Contains("bucket.1") && Catch::Contains("f32[5]"));
  }
  CHECK(dir_entries(root).empty());

  // A plan for another world size is refused the same way.
  run_local(2, [&](Communicator& c) {
    st[size_t(c.rank())] =
        save_sharded_checkpoint(c, root.string(), 5, make_plan(3), slice(make_plan(3), full, 0, 0), full.state, 2);
  });
  for (const Status& s : st) CHECK_THAT(s.message(), Catch::Contains("world 3"));
  CHECK(dir_entries(root).empty());
}

TEST_CASE("keep-N pruning and latest count checkpoints of both formats", "[zero_checkpoint]") {
  auto root = fresh_dir("zc_keep");
  REQUIRE(save_checkpoint(root.string(), 10, single_writer(make_full(10.0f)), 3).ok());
  REQUIRE(all_ok(save_all(root, 20, make_plan(2), make_full(20.0f), 3)));
  REQUIRE(save_checkpoint(root.string(), 30, single_writer(make_full(30.0f)), 3).ok());
  REQUIRE(all_ok(save_all(root, 40, make_plan(3), make_full(40.0f), 3)));
  CHECK(dir_entries(root) == std::vector<std::string>{"step_00000020", "step_00000030", "step_00000040"});
  CHECK(*latest_checkpoint(root.string()) == (root / "step_00000040").string());
  // The single-writer reader points at load_train_state instead of failing on a missing file.
  auto old = load_checkpoint(root.string());
  REQUIRE(!old.ok());
  CHECK_THAT(old.status().message(), Catch::Contains("load_train_state"));

  REQUIRE(save_checkpoint(root.string(), 50, single_writer(make_full(50.0f)), 2).ok());
  CHECK(dir_entries(root) == std::vector<std::string>{"step_00000040", "step_00000050"});
  REQUIRE(all_ok(save_all(root, 60, make_plan(1), make_full(60.0f), 1)));
  CHECK(dir_entries(root) == std::vector<std::string>{"step_00000060"});
  auto r = load_train_state(root.string());
  REQUIRE(r.ok());
  CHECK(r->step == 60);
  check_equal_state(*r, make_full(60.0f));
}

TEST_CASE("a broken sharded checkpoint is refused with an error naming the file", "[zero_checkpoint]") {
  auto root = fresh_dir("zc_broken");
  const ir::BucketPlan plan = make_plan(2);
  REQUIRE(all_ok(save_all(root / "good", 1, plan, make_full(1.0f), 2)));
  const fs::path good = root / "good" / "step_00000001";
  // A fresh copy of the good checkpoint to break.
  auto copy = [&] {
    fs::path d = root / "broken";
    fs::remove_all(d);
    fs::copy(good, d, fs::copy_options::recursive);
    return d;
  };
  auto rewrite_shard = [&](const fs::path& d, int rank, auto&& edit) {
    const std::string path = (d / ("shard_rank" + std::to_string(rank) + ".safetensors")).string();
    NamedTensors t = *load_safetensors(path);
    edit(t);
    REQUIRE(save_safetensors(path, t).ok());
    return path;
  };
  auto error_of = [](const fs::path& d) {
    auto r = load_train_state(d.string());
    return r.ok() ? std::string("loaded") : r.status().message();
  };

  SECTION("a shard file missing for the index's world size") {
    fs::path d = copy();
    fs::remove(d / "shard_rank1.safetensors");
    CHECK_THAT(error_of(d), Catch::Contains((d / "shard_rank1.safetensors").string()) && Catch::Contains("world = 2"));
  }
  SECTION("a shard file beyond the index's world size") {
    fs::path d = copy();
    fs::copy_file(d / "shard_rank1.safetensors", d / "shard_rank2.safetensors");
    CHECK_THAT(error_of(d), Catch::Contains((d / "shard_rank2.safetensors").string()));
  }
  SECTION("a shard tensor whose shape disagrees with the index") {
    fs::path d = copy();
    std::string path = rewrite_shard(d, 0, [](NamedTensors& t) {
      for (auto& [name, x] : t)
        if (name == "bucket.0.param") x = ramp({14}, 0.0f);
    });
    CHECK_THAT(error_of(d), Catch::Contains(path) && Catch::Contains("bucket.0.param") && Catch::Contains("f32[14]") &&
                                Catch::Contains("f32[13]"));
  }
  SECTION("a shard tensor missing") {
    fs::path d = copy();
    std::string path = rewrite_shard(d, 1, [](NamedTensors& t) {
      std::erase_if(t, [](const auto& p) { return p.first == "bucket.2.exp_avg_sq"; });
    });
    CHECK_THAT(error_of(d),
               Catch::Contains(path) && Catch::Contains("bucket.2.exp_avg_sq") && Catch::Contains("missing"));
  }
  SECTION("an index whose offsets overlap or leave the bucket") {
    fs::path d = copy();
    const fs::path index = d / "zero_index.json";
    std::ifstream in(index);
    nlohmann::json j = nlohmann::json::parse(in);
    in.close();
    SECTION("overlap") { j["buckets"][0]["params"][1]["offset"] = 20; }
    SECTION("outside") { j["buckets"][1]["params"][0]["offset"] = 1; }
    SECTION("padding not a multiple of the world") { j["buckets"][1]["padded"] = 11; }
    std::ofstream(index) << j.dump();
    CHECK_THAT(error_of(d), Catch::Contains(index.string()) && Catch::Contains("bucket \"bucket."));
  }
  SECTION("an index of another format") {
    fs::path d = copy();
    std::ofstream(d / "zero_index.json") << R"({"format": "other", "version": 1})";
    CHECK_THAT(error_of(d), Catch::Contains((d / "zero_index.json").string()) && Catch::Contains("autosp-zero"));
  }
}
