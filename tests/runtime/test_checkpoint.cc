// Checkpoints: round trip, keep-N pruning, latest lookup, and atomicity under a write that
// fails like a full disk at every point of the save.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>

#include "runtime/checkpoint.h"
#include "tests/test_util.h"

using namespace autosp;
using namespace autosp::runtime;
namespace fs = std::filesystem;

namespace {

using testing::fresh_dir;

Tensor ramp(Shape s, float start) {
  Tensor t = Tensor::zeros(DType::f32, std::move(s));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = start + float(i) * 0.5f;
  return t;
}

Checkpoint make(float base) {
  Checkpoint c;
  c.model = {{"model.embed_tokens.weight", ramp({8, 4}, base)},
             {"model.layers.0.self_attn.q_proj.weight", ramp({4, 4}, base + 1)}};
  c.optimizer = {{"model.embed_tokens.weight.exp_avg", ramp({8, 4}, base + 2)},
                 {"model.embed_tokens.weight.exp_avg_sq", ramp({8, 4}, base + 3)}};
  c.state = {{"data_step", 120}, {"seed", 1234}, {"config", {{"train", {{"lr", 0.003}}}}}};
  return c;
}

bool same_tensors(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.shape() != b[i].second.shape() ||
        std::memcmp(a[i].second.raw(), b[i].second.raw(), a[i].second.nbytes()) != 0)
      return false;
  return true;
}

using testing::dir_entries;

}  // namespace

TEST_CASE("a checkpoint loads back exactly: tensors, step and state") {
  auto root = fresh_dir("roundtrip");
  Checkpoint c = make(1.0f);
  REQUIRE(save_checkpoint(root.string(), 120, c, 3).ok());
  CHECK(dir_entries(root) == std::vector<std::string>{"step_00000120"});
  CHECK(dir_entries(root / "step_00000120") ==
        std::vector<std::string>{"model.safetensors", "optimizer.safetensors", "state.json"});
  for (auto path : {root / "step_00000120", root}) {  // a step dir, or the root (newest)
    auto r = load_checkpoint(path.string());
    REQUIRE(r.ok());
    CHECK(r->step == 120);
    CHECK(r->path == (root / "step_00000120").string());
    CHECK(same_tensors(r->model, c.model));
    CHECK(same_tensors(r->optimizer, c.optimizer));
    CHECK(r->state == c.state);
  }
}

TEST_CASE("only the keep newest checkpoints remain, and latest is the highest step") {
  auto root = fresh_dir("keep");
  for (int64_t step : {10, 20, 30, 40}) REQUIRE(save_checkpoint(root.string(), step, make(float(step)), 2).ok());
  CHECK(dir_entries(root) == std::vector<std::string>{"step_00000030", "step_00000040"});
  auto latest = latest_checkpoint(root.string());
  REQUIRE(latest.ok());
  CHECK(*latest == (root / "step_00000040").string());
  auto r = load_checkpoint(root.string());
  REQUIRE(r.ok());
  CHECK(r->step == 40);
  CHECK(same_tensors(r->model, make(40.0f).model));
}

TEST_CASE("saving an existing step replaces it") {
  auto root = fresh_dir("replace");
  REQUIRE(save_checkpoint(root.string(), 5, make(1.0f), 2).ok());
  REQUIRE(save_checkpoint(root.string(), 5, make(9.0f), 2).ok());
  CHECK(dir_entries(root) == std::vector<std::string>{"step_00000005"});
  CHECK(same_tensors(load_checkpoint(root.string())->model, make(9.0f).model));
}

TEST_CASE("an empty or missing root has no latest checkpoint") {
  auto root = fresh_dir("empty");
  fs::create_directories(root / "step_00000007");  // incomplete: no files inside
  fs::create_directories(root / "notes");
  auto r = latest_checkpoint(root.string());
  REQUIRE(!r.ok());
  CHECK(r.status().code() == StatusCode::not_found);
  CHECK(!latest_checkpoint((root / "missing").string()).ok());
  CHECK(!load_checkpoint((root / "missing").string()).ok());
}

TEST_CASE("a write failing at any byte leaves the previous checkpoint intact and no temp dir") {
  auto root = fresh_dir("fault");
  const Checkpoint good = make(1.0f);
  REQUIRE(save_checkpoint(root.string(), 100, good, 2).ok());
  // Bytes a full save writes: the sum of its files' sizes.
  int64_t total = 0;
  for (const auto& e : fs::directory_iterator(root / "step_00000100")) total += int64_t(e.file_size());
  // Fail at the start, inside each file and on the last byte.
  for (int64_t budget : {int64_t(0), int64_t(7), int64_t(100), total / 2, total - 300, total - 1}) {
    INFO("fault after " << budget << " of " << total << " bytes");
    set_checkpoint_write_fault_after_bytes(budget);
    Status st = save_checkpoint(root.string(), 200, make(2.0f), 2);
    set_checkpoint_write_fault_after_bytes(-1);
    REQUIRE(!st.ok());
    CHECK(st.code() == StatusCode::io_error);
    CHECK_THAT(st.message(), Catch::Contains("step 200") && Catch::Contains("No space left on device"));
    CHECK(dir_entries(root) == std::vector<std::string>{"step_00000100"});
    auto r = load_checkpoint(root.string());
    REQUIRE(r.ok());
    CHECK(r->step == 100);
    CHECK(same_tensors(r->model, good.model));
    CHECK(same_tensors(r->optimizer, good.optimizer));
  }
  // With the fault off the same save succeeds.
  REQUIRE(save_checkpoint(root.string(), 200, make(2.0f), 2).ok());
  CHECK(load_checkpoint(root.string())->step == 200);
}
