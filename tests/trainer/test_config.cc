// Config: defaults, files, --set overrides, and one test per kind of user error, each
// checking that the message names the key (and the file) the user has to fix.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "tests/test_util.h"
#include "trainer/config.h"

using namespace autosp;
using namespace autosp::trainer;
using nlohmann::json;

namespace {

std::string temp_config(const std::string& name, const std::string& text) {
  auto path = testing::scratch_path(name);
  std::ofstream(path) << text;
  return path;
}

// The message of a failed load/validate, or "" when it succeeded.
std::string load_error(const std::string& text, std::vector<std::string> sets = {}) {
  auto path = temp_config("c.json", text);
  auto r = load_options(path, sets);
  return r.ok() ? "" : r.status().message();
}

std::string validate_error(const std::vector<std::string>& sets, int world_size = 1) {
  auto path = temp_config("v.json", "{}");
  auto r = load_options(path, sets);
  REQUIRE(r.ok());
  Status st = validate(*r, world_size, "config v.json");
  return st.ok() ? "" : st.message();
}

}  // namespace

TEST_CASE("an empty config gives the documented defaults, which validate") {
  auto r = options_from_json(json::object(), "empty");
  REQUIRE(r.ok());
  const Options& o = *r;
  CHECK(o.model.arch == "llama");
  CHECK(o.model.vocab_size == 257);
  CHECK(o.data.eod_token == 256);
  CHECK(o.train.seq_len == 256);
  CHECK(o.train.lr == Approx(3e-3));
  CHECK(o.parallel.sp == 1);
  CHECK(o.checkpoint.keep == 2);
  CHECK(o.log.every == 10);
  CHECK(validate(o, 1).ok());
}

TEST_CASE("the shipped configs load and validate") {
  for (const char* name : {"configs/tiny-cpu.json", "configs/recall-cpu.json"}) {
    INFO(name);
    auto r = load_options(std::string(AUTOSP_SOURCE_DIR) + "/" + name, {});
    REQUIRE(r.ok());
    Status st = validate(*r, 1);
    INFO(st.message());
    CHECK(st.ok());
  }
}

TEST_CASE("to_json round-trips through options_from_json and lists every section") {
  Options o;
  o.train.lr = 1.5e-4;
  o.model.norm_eps = 1e-6f;
  o.data.documents = false;
  json j = to_json(o);
  for (const char* s : {"model", "data", "train", "parallel", "checkpoint", "log"}) CHECK(j.contains(s));
  // Floats print in their short form, not as widened doubles.
  CHECK(j["model"]["norm_eps"].dump() == "1e-06");
  auto back = options_from_json(j, "round trip");
  REQUIRE(back.ok());
  CHECK(to_json(*back) == j);
  CHECK(options_hash(*back) == options_hash(o));
}

TEST_CASE("options_hash is FNV-1a of the dumped JSON, so equal options hash equally everywhere") {
  // Independent FNV-1a 64, checked on the published test vector for "a".
  auto fnv1a = [](const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
  };
  REQUIRE(fnv1a("a") == 0xaf63dc4c8601ec8cull);
  Options a, b;
  CHECK(options_hash(a) == fnv1a(to_json(a).dump()));
  CHECK(options_hash(a) == options_hash(b));
  CHECK(options_hash(a) == options_hash(*options_from_json(to_json(a), "x")));
  b.parallel.overlap = !b.parallel.overlap;
  CHECK(options_hash(b) != options_hash(a));
  b = a;
  b.train.seed += 1;
  CHECK(options_hash(b) != options_hash(a));
}

TEST_CASE("a file's values override defaults and missing keys keep them") {
  auto path = temp_config("f.json", R"({ // comments are allowed
    "model": {"d_model": 64, "n_heads": 2, "n_kv_heads": 1},
    "train": {"lr": 1e-3, "steps": 2e3}})");
  auto r = load_options(path, {});
  REQUIRE(r.ok());
  CHECK(r->model.d_model == 64);
  CHECK(r->model.n_kv_heads == 1);
  CHECK(r->model.n_layers == 2);  // default
  CHECK(r->train.lr == Approx(1e-3));
  CHECK(r->train.steps == 2000);  // a whole-number float is accepted for an integer key
}

TEST_CASE("set overrides apply after the file, parsed as JSON or else as a string") {
  auto path = temp_config("s.json", R"({"train": {"lr": 1e-3}, "data": {"documents": true}})");
  auto r = load_options(path, {"train.lr=3e-4", "data.documents=false", "data.train=some/dir/x.u16",
                               "model.arch=gpt2", "parallel.sp_strategy=\"ring\"", "train.lr=5e-4"});
  REQUIRE(r.ok());
  CHECK(r->train.lr == Approx(5e-4));  // the last --set wins
  CHECK(r->data.documents == false);
  CHECK(r->data.train == "some/dir/x.u16");
  CHECK(r->model.arch == "gpt2");
  CHECK(r->parallel.sp_strategy == "ring");
}

TEST_CASE("a bad --set names the --set and the key") {
  std::string e = load_error("{}", {"train.lr=fast"});
  CHECK_THAT(e, Catch::Contains("--set train.lr=fast") && Catch::Contains("train.lr") &&
                    Catch::Contains("expected a finite number") && Catch::Contains("\"fast\""));
  e = load_error("{}", {"train.lrr=1"});
  CHECK_THAT(e, Catch::Contains("--set train.lrr=1") && Catch::Contains("unknown key \"train.lrr\""));
  e = load_error("{}", {"lr=1"});
  CHECK_THAT(e, Catch::Contains("expected section.key=VALUE"));
  e = load_error("{}", {"train.steps"});
  CHECK_THAT(e, Catch::Contains("expected section.key=VALUE"));
  e = load_error("{}", {"train.steps=1.5"});
  CHECK_THAT(e, Catch::Contains("train.steps") && Catch::Contains("expected an integer"));
}

TEST_CASE("unknown sections and keys in a file are errors naming the file and key") {
  std::string e = load_error(R"({"trian": {}})");
  CHECK_THAT(e, Catch::Contains("c.json") && Catch::Contains("unknown section \"trian\""));
  e = load_error(R"({"train": {"learning_rate": 0.1}})");
  CHECK_THAT(e, Catch::Contains("c.json") && Catch::Contains("unknown key \"train.learning_rate\"") &&
                    Catch::Contains("lr"));
}

TEST_CASE("wrong types are errors naming the file, key and expected type") {
  struct Case {
    const char* text;
    const char* key;
    const char* expected;
  };
  for (const Case& c : {Case{R"({"train": {"seq_len": "256"}})", "train.seq_len", "expected an integer"},
                        Case{R"({"train": {"lr": true}})", "train.lr", "expected a finite number"},
                        Case{R"({"data": {"documents": 1}})", "data.documents", "expected true or false"},
                        Case{R"({"model": {"arch": 3}})", "model.arch", "expected a string"},
                        Case{R"({"model": {"norm_eps": [1]}})", "model.norm_eps", "expected a finite number"},
                        Case{R"({"log": 5})", "log", "expected an object"}}) {
    std::string e = load_error(c.text);
    INFO(e);
    CHECK_THAT(e, Catch::Contains("c.json") && Catch::Contains(c.key) && Catch::Contains(c.expected));
  }
}

TEST_CASE("a missing or malformed file is an error naming it") {
  auto r = load_options("/nonexistent/autosp.json", {});
  REQUIRE(!r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("/nonexistent/autosp.json"));
  CHECK_THAT(load_error("{\"train\": {"), Catch::Contains("c.json") && Catch::Contains("not valid JSON"));
  CHECK_THAT(load_error("[1, 2]"), Catch::Contains("c.json") && Catch::Contains("JSON object"));
}

TEST_CASE("impossible values are errors naming the key and what was expected") {
  struct Case {
    std::vector<std::string> sets;
    const char* key;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {{"model.n_heads=4", "model.n_kv_heads=3"}, "model.n_heads", "multiple of model.n_kv_heads"},
      {{"model.d_model=130", "model.n_heads=4"}, "model.d_model", "divisible by model.n_heads"},
      {{"model.arch=gpt2", "model.n_kv_heads=2"}, "model.n_kv_heads", "equal to model.n_heads"},
      {{"model.arch=mamba"}, "model.arch", "\"llama\" or \"gpt2\""},
      {{"model.vocab_size=1"}, "model.vocab_size", "≥ 2"},
      {{"train.seq_len=2048"}, "train.seq_len", "≤ model.max_seq_len = 1024"},
      {{"train.seq_len=0"}, "train.seq_len", "≥ 1"},
      {{"train.batch_size=0"}, "train.batch_size", "≥ 1"},
      {{"train.steps=-1"}, "train.steps", "≥ 0"},
      {{"train.lr=-0.1"}, "train.lr", "≥ 0"},
      {{"train.min_lr=0.1", "train.lr=0.01"}, "train.min_lr", "≤ train.lr"},
      {{"train.beta1=1.0"}, "train.beta1", "in [0, 1)"},
      {{"train.lr_schedule=step"}, "train.lr_schedule", "\"cosine\", \"linear\", \"constant\" or \"wsd\""},
      {{"train.decay_steps=-5"}, "train.decay_steps", "≥ 0"},
      {{"train.beta2=-0.5"}, "train.beta2", "in [0, 1)"},
      {{"train.dtype=fp16"}, "train.dtype", "\"f32\" or \"bf16\""},
      {{"train.device=tpu"}, "train.device", "\"cpu\" or \"cuda\""},
      {{"train.hardware=a100"}, "train.hardware", "\"h100x8-nvlink\" (--hardware sets it)"},
      {{"train.device=cuda"}, "train.dtype", "\"bf16\" with train.device = \"cuda\""},
      {{"data.format=txt"}, "data.format", "\"u16\", \"u32\" or \"llmc\""},
      {{"data.eod_token=257"}, "data.eod_token", "when data.documents is true"},
      {{"model.vocab_size=70000"}, "model.vocab_size", "16-bit tokens"},
      {{"parallel.sp=0"}, "parallel.sp", "≥ 1"},
      {{"parallel.sp_strategy=tree"}, "parallel.sp_strategy", "\"ring\""},
      {{"parallel.zero_stage=4"}, "parallel.zero_stage", "0, 1, 2 or 3"},
      {{"checkpoint.keep=0"}, "checkpoint.keep", "≥ 1"},
      {{"log.every=0"}, "log.every", "≥ 1"},
      {{"train.eval_every=10", "data.val=\"\""}, "data.val", "train.eval_every"},
  };
  for (const Case& c : cases) {
    std::string e = validate_error(c.sets);
    INFO(c.sets[0] << " → " << e);
    CHECK_THAT(e, Catch::Contains("config v.json") && Catch::Contains(c.key) && Catch::Contains(c.expected));
  }
}

TEST_CASE("sp must divide the world size") {
  CHECK(validate_error({"parallel.sp=2"}, 4).empty());
  CHECK_THAT(validate_error({"parallel.sp=3"}, 4),
             Catch::Contains("parallel.sp = 3") && Catch::Contains("divisor of the world size 4"));
  CHECK_THAT(validate_error({"parallel.sp=2"}, 1), Catch::Contains("parallel.sp"));
}

TEST_CASE("bf16 and an eod token outside the vocabulary without documents are accepted by the config") {
  CHECK(validate_error({"train.dtype=bf16"}).empty());
  CHECK(validate_error({"data.documents=false", "data.eod_token=9999"}).empty());
}
