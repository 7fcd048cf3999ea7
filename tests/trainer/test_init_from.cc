// checkpoint.init_from: a run starts from a Hugging Face-style safetensors model (what
// --export writes, or a transformers Llama directory) with exactly its weights, under any
// ZeRO stage; BF16 tensors widen exactly; sharded directories follow their index; a missing
// or misshapen tensor is an error naming the file and the tensor.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "kernels/cpu/cast.h"
#include "runtime/comm.h"
#include "runtime/pretrained.h"
#include "runtime/safetensors.h"
#include "runtime/zero_checkpoint.h"
#include "sp_equivalence.h"
#include "tests/test_util.h"

using namespace autosp;
using namespace autosp::testing;
using autosp::trainer::Options;
using autosp::trainer::Trainer;

namespace {

// A model after a few steps, exported as one file; returns its tensors.
runtime::NamedTensors exported_model(const std::string& dir, const std::string& file) {
  const Options o = sp_test_options({"checkpoint.dir=" + dir});
  auto t = Trainer::create(o);
  REQUIRE(t.ok());
  std::string error;
  record_steps(*t.value(), 3, error);
  REQUIRE(error.empty());
  REQUIRE(t.value()->save_checkpoint().ok());
  REQUIRE(runtime::export_consolidated(dir, file).ok());
  auto tensors = runtime::load_safetensors(file);
  REQUIRE(tensors.ok());
  return tensors.value();
}

void check_same(const runtime::NamedTensors& want, const runtime::NamedTensors& got) {
  REQUIRE(got.size() == want.size());
  for (const auto& [name, w] : want) {
    auto it = std::find_if(got.begin(), got.end(), [&](const auto& p) { return p.first == name; });
    REQUIRE(it != got.end());
    INFO(name);
    REQUIRE(it->second.shape() == w.shape());
    CHECK(std::memcmp(it->second.raw(), w.raw(), w.nbytes()) == 0);
  }
}

}  // namespace

TEST_CASE("a run starts from an exported model with exactly its weights, at any ZeRO stage", "[init_from]") {
  const std::string file = scratch_path("init_from_model.safetensors");
  const runtime::NamedTensors want = exported_model(scratch_path("init_from_ckpt"), file);

  const std::string saved = scratch_path("init_from_saved");
  auto one = Trainer::create(sp_test_options({"checkpoint.init_from=" + file, "checkpoint.dir=" + saved}));
  REQUIRE(one.ok());
  check_same(want, one.value()->params().full_parameters());
  // The optimizer starts fresh: saved at once, the moments are zeros.
  REQUIRE(one.value()->save_checkpoint().ok());
  auto state = runtime::load_train_state(saved);
  REQUIRE(state.ok());
  for (const runtime::NamedTensors* moments : {&state.value().exp_avg, &state.value().exp_avg_sq})
    for (const auto& [name, m] : *moments)
      for (int64_t i = 0; i < m.numel(); ++i) REQUIRE(m.data<float>()[i] == 0.0f);

  // ZeRO-3 over 2 ranks: each keeps its shard; gathered, they are the file's tensors.
  const Options zero3 = sp_test_options({"parallel.sp=2", "parallel.zero_stage=3", "checkpoint.init_from=" + file});
  std::vector<runtime::NamedTensors> got(2);
  runtime::run_local(2, [&](runtime::Communicator& c) {
    auto t = Trainer::create(zero3, "", &c);
    if (!t.ok()) throw std::runtime_error(t.status().message());
    got[size_t(c.rank())] = t.value()->params().full_parameters();
  });
  for (const auto& g : got) check_same(want, g);
}

TEST_CASE("BF16 tensors in a sharded Hugging Face directory load, widened, and extra tensors are skipped",
          "[init_from]") {
  const runtime::NamedTensors want = exported_model(scratch_path("init_from_ckpt2"), scratch_path("m.safetensors"));
  // Round every tensor to BF16 and split them over two shard files, with an index.
  const std::filesystem::path dir = fresh_dir("init_from_hf");
  runtime::NamedTensors shard[2], widened;
  nlohmann::json map = nlohmann::json::object();
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& [name, t] = want[i];
    Tensor b = Tensor::zeros(DType::bf16, t.shape());
    kernels::cpu::cast_f32_to_bf16(t.data<float>(), b.data<uint16_t>(), t.numel());
    Tensor w = Tensor::zeros(DType::f32, t.shape());
    kernels::cpu::cast_bf16_to_f32(b.data<uint16_t>(), w.data<float>(), t.numel());
    shard[i % 2].push_back({name, b});
    widened.push_back({name, w});
    map[name] = i % 2 ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
  }
  shard[1].push_back({"model.rotary_emb.inv_freq", Tensor::zeros(DType::f32, {4})});  // not a parameter
  map["model.rotary_emb.inv_freq"] = "model-00002-of-00002.safetensors";
  REQUIRE(runtime::save_safetensors((dir / "model-00001-of-00002.safetensors").string(), shard[0]).ok());
  REQUIRE(runtime::save_safetensors((dir / "model-00002-of-00002.safetensors").string(), shard[1]).ok());
  std::ofstream(dir / "model.safetensors.index.json") << nlohmann::json{{"weight_map", map}}.dump();

  auto t = Trainer::create(sp_test_options({"checkpoint.init_from=" + dir.string()}));
  REQUIRE(t.ok());
  check_same(widened, t.value()->params().full_parameters());
  int skipped = -1;
  std::vector<runtime::ParamSpec> specs;
  for (const auto& [name, w] : want) specs.push_back({name, w.shape(), {}});
  REQUIRE(runtime::load_pretrained(dir.string(), specs, &skipped).ok());
  CHECK(skipped == 1);
}

TEST_CASE("a missing path, tensor or shape is an error naming it", "[init_from]") {
  const std::string file = scratch_path("init_from_small.safetensors");
  const runtime::NamedTensors tensors = exported_model(scratch_path("init_from_ckpt3"), file);
  auto error_of = [](const std::vector<std::string>& sets) {
    auto t = Trainer::create(sp_test_options(sets));
    REQUIRE_FALSE(t.ok());
    return t.status().message();
  };
  CHECK_THAT(error_of({"checkpoint.init_from=/nonexistent/model.safetensors"}),
             Catch::Contains("/nonexistent/model.safetensors") && Catch::Contains("does not exist"));
  // Another width: every matrix has the wrong shape; the message names the file and what the
  // config needs.
  CHECK_THAT(error_of({"checkpoint.init_from=" + file, "model.d_model=64"}),
             Catch::Contains(file) && Catch::Contains("this config needs F32 or BF16"));
  // One tensor left out.
  const std::string partial = scratch_path("init_from_partial.safetensors");
  REQUIRE(runtime::save_safetensors(partial, runtime::NamedTensors(tensors.begin() + 1, tensors.end())).ok());
  CHECK_THAT(error_of({"checkpoint.init_from=" + partial}),
             Catch::Contains("has no tensor " + tensors.front().first));
  // A directory without a model.
  CHECK_THAT(error_of({"checkpoint.init_from=" + fresh_dir("init_from_empty").string()}),
             Catch::Contains("neither model.safetensors nor model.safetensors.index.json"));
}
