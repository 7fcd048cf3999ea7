// autosp-train as a user meets it: flags, exit codes and messages. Runs the built binary.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/test_util.h"

namespace {

struct Run {
  int code;
  std::string out;  // stdout and stderr together
};

Run run(const std::string& args, const std::string& env = "") {
  const std::string data = std::string(AUTOSP_BINARY_DIR) + "/data/";
  const std::string cmd = env + " " + AUTOSP_BINARY_DIR + "/autosp-train --config " + AUTOSP_SOURCE_DIR +
                          "/configs/tiny-cpu.json --set data.train=" + data + "corpus_train.u16 --set data.val=" +
                          data + "corpus_val.u16 --set log.metrics_file= " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

}  // namespace

TEST_CASE("config mistakes stop before any work with exit code 2 and name the key", "[cli]") {
  Run r = run("--set train.seq_len=4096");
  CHECK(r.code == 2);
  CHECK(has(r.out, "train.seq_len"));
  CHECK(has(r.out, "tiny-cpu.json"));
  r = run("--set model.n_kv_heads=3");
  CHECK(r.code == 2);
  CHECK(has(r.out, "n_kv_heads"));
  r = run("--set train.no_such_key=1");
  CHECK(r.code == 2);
  CHECK(has(r.out, "train.no_such_key"));
  r = run("--set parallel.sp=2", "OMPI_COMM_WORLD_SIZE=3");
  CHECK(r.code == 2);
  CHECK(has(r.out, "parallel.sp"));
  r = run("--set data.train=/nonexistent/tokens.u16");
  CHECK(r.code == 2);
  CHECK(has(r.out, "/nonexistent/tokens.u16"));
  r = run("--no-such-flag");
  CHECK(r.code == 2);
}

TEST_CASE("under mpirun, ranks that read different configs stop with an error on every rank", "[cli][mpi]") {
  // MPMD launch: rank 0 and rank 1 get different --set flags.
  const std::string data = std::string(AUTOSP_BINARY_DIR) + "/data/";
  const std::string exe = std::string(AUTOSP_BINARY_DIR) + "/autosp-train --config " + AUTOSP_SOURCE_DIR +
                          "/configs/tiny-cpu.json --set data.train=" + data + "corpus_train.u16 --set data.val=" + data +
                          "corpus_val.u16 --set log.metrics_file= --set parallel.sp=2";
  const std::string cmd = "OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 1 " + exe +
                          " --set train.lr=1e-3 : -np 1 " + exe + " --set train.lr=2e-3 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int st = pclose(p);
  INFO(out);
  CHECK((WIFEXITED(st) && WEXITSTATUS(st) != 0));
  CHECK(has(out, "rank 0: error: 1 rank(s) read a different config than rank 0"));
  CHECK(has(out, "rank 1: error: 1 rank(s) read a different config than rank 0"));
}

TEST_CASE("a ZeRO-3 run under mpirun writes shards that one process resumes and exports", "[cli][mpi]") {
  const std::string ck = autosp::testing::scratch_path("zero3_ckpt");
  Run r = run("--set parallel.sp=2 --set parallel.zero_stage=3 --set train.steps=4 --set log.every=2 "
              "--set checkpoint.every=4 --set checkpoint.dir=" + ck,
              "OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2");
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(has(r.out, "persistent memory per rank (zero 3)"));
  CHECK(std::filesystem::exists(ck + "/step_00000004/shard_rank1.safetensors"));
  Run e = run("--eval-only --resume " + ck);  // one process, ZeRO 0
  INFO(e.out);
  CHECK(e.code == 0);
  CHECK(has(e.out, "{\"eval_loss\": "));
}

TEST_CASE("the trace flag writes one step as a Chrome trace: a track per stream per rank", "[cli][mpi]") {
  const std::string trace = autosp::testing::scratch_path("trace.json");
  Run r = run("--set parallel.sp=2 --set train.steps=2 --set log.every=1 --set checkpoint.every=0 --trace " + trace,
              "OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 2");
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(has(r.out, "| comm "));  // exposed communication on the progress line
  std::ifstream f(trace);
  const auto j = nlohmann::json::parse(f);
  std::set<std::pair<int, int>> tracks;
  bool labelled = false;
  for (const auto& e : j.at("traceEvents"))
    if (e.at("ph") == "X") {
      tracks.insert({e.at("pid").get<int>(), e.at("tid").get<int>()});
      labelled = labelled || e.at("name").get<std::string>().find("(layer 1)") != std::string::npos;
    }
  CHECK(tracks == std::set<std::pair<int, int>>{{0, 0}, {0, 1}, {1, 0}, {1, 1}});
  CHECK(labelled);
}

TEST_CASE("plan for an 8-GPU node: Llama-3-8B at 128k tokens, predicted step time and MFU per strategy",
          "[cli][plan]") {
  const std::string cmd = std::string(AUTOSP_BINARY_DIR) + "/autosp-train --plan --hardware h100x8-nvlink --config " +
                          AUTOSP_SOURCE_DIR + "/configs/llama3-8b-128k.json 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  CHECK(pclose(p) == 0);
  INFO(out);
  CHECK(has(out, "8.03G parameters"));
  CHECK(has(out, "world 8 = dp 1 x sp 8; zero 3"));
  CHECK(has(out, "prediction on h100x8-nvlink"));
  for (const char* s : {"\n  ulysses ", "\n  ring ", "\n  hybrid "}) CHECK(has(out, s));
  CHECK(has(out, "MFU"));
  CHECK(has(out, "optimizer "));                    // the step after the program is predicted too
  CHECK(has(out, "note: with data.documents"));     // packed documents: not cuDNN on the GPU yet
}

TEST_CASE("plan the longest sequence that fits a memory budget", "[cli][plan]") {
  Run r = run("--plan --max-seq --memory-gib 0.1");
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(has(r.out, "longest train.seq_len within 0.1 GiB per rank: "));
  CHECK(run("--max-seq").code == 2);  // needs --plan and a budget
}

// --world plans a world larger than one SP group outside mpirun: data parallel over the rest,
// with the gradients' reductions over the world and the tokens of every replica.
TEST_CASE("plan a data-parallel world with --world", "[cli][plan]") {
  Run r = run("--plan --world 4 --set parallel.sp=2");
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(has(r.out, "world 4 = dp 2 x sp 2"));
  CHECK(has(r.out, "all_reduce (world)"));
  CHECK(run("--plan --world 3 --set parallel.sp=2").code == 2);  // sp must divide the world
  Run negative = run("--plan --world=-1");
  CHECK(negative.code == 2);
  CHECK(has(negative.out, "--world -1: expected ≥ 1"));
  CHECK(run("--world 2 --set train.steps=1").code == 2);        // planning only
  CHECK(run("--plan --world 0").code == 2);
}

// --plan-json writes what --plan prints: memory in bytes (adding up to the total), the step's
// shape and mesh, decisions with reasons, communication and predictions; with --max-seq, the
// longest length too (the one the text names).
TEST_CASE("plan-json writes the plan as JSON", "[cli][plan]") {
  const std::string file = autosp::testing::scratch_path("plan.json");
  Run r = run("--plan --max-seq --memory-gib 0.1 --world 2 --set parallel.sp=2 --plan-json " + file);
  INFO(r.out);
  REQUIRE(r.code == 0);
  std::ifstream in(file);
  const nlohmann::json j = nlohmann::json::parse(in);
  const auto& m = j.at("memory_bytes");
  CHECK(m.at("total").get<int64_t>() ==
        m.at("parameters").get<int64_t>() + m.at("gradients").get<int64_t>() + m.at("optimizer").get<int64_t>() +
            m.at("buffers").get<int64_t>() +
            std::max(m.at("activations").get<int64_t>(), m.at("eval_activations").get<int64_t>()) +
            m.at("workspace").get<int64_t>());
  CHECK(m.at("total").get<int64_t>() <= int64_t(0.1 * (1 << 30)));  // the budget --max-seq searched under
  CHECK(j.at("step").at("world") == 2);
  CHECK(j.at("step").at("sp") == 2);
  CHECK(j.at("attention").size() == 2);  // the tiny model's two layers
  CHECK(!j.at("recompute").at("reason").get<std::string>().empty());
  CHECK(j.at("communication").size() > 0);
  CHECK(j.at("activation_peak").at("bytes").get<int64_t>() <= m.at("activations").get<int64_t>());
  CHECK(j.at("activation_peak").at("groups").size() > 0);
  const auto& steps = j.at("prediction").at("steps");
  REQUIRE(steps.size() == 4);  // as planned, then each strategy forced
  CHECK(steps[0].at("step_s").get<double>() > 0);
  const int64_t longest = j.at("longest_seq_len").at("tokens");
  CHECK(has(r.out, "per rank: " + std::to_string(longest) + " tokens"));
  CHECK(j.at("step").at("seq_len") == longest);
  CHECK(run("--plan --plan-json /nonexistent-dir/x.json").code == 2);
  Run alone = run("--plan-json " + file);  // without --plan: an error, not a training run
  CHECK(alone.code == 2);
  CHECK(has(alone.out, "--plan-json goes with --plan"));
}

// A plan over its budget says so and plans the config again with one change each (ZeRO-3,
// offload, twice the SP degree), each with what it would need; a plan that fits says nothing.
TEST_CASE("a plan over budget lists what one change would need", "[cli][plan]") {
  Run over = run("--plan --memory-gib 0.005 --world 2 --set parallel.sp=2 --set parallel.zero_stage=1");
  INFO(over.out);
  CHECK(over.code == 0);
  for (const char* line : {"does not fit train.memory_gib = 5.1 MiB", "  --set parallel.zero_stage=3: ",
                           "  --set train.offload=on: ", "  --set parallel.sp=4 on 4 ranks: ", "still over"})
    CHECK(has(over.out, line));
  Run roomy = run("--plan --memory-gib 1 --world 2 --set parallel.sp=2");
  CHECK(roomy.code == 0);
  CHECK_FALSE(has(roomy.out, "does not fit"));
}

TEST_CASE("the help flag documents every flag", "[cli]") {
  Run r = run("--help");
  CHECK(r.code == 0);
  for (const char* f :
       {"--config", "--set", "--resume", "--eval-only", "--dump-ir", "--plan", "--export", "--profile", "--trace",
        "--max-seq", "--memory-gib", "--hardware", "--world", "--plan-json"})
    CHECK(has(r.out, f));
}

TEST_CASE("training prints one progress line per log.every steps, then --eval-only reads the checkpoint", "[cli]") {
  const std::string ck = autosp::testing::scratch_path("cli_ckpt");
  Run r = run("--set train.steps=4 --set log.every=2 --set checkpoint.every=4 --set checkpoint.dir=" + ck);
  INFO(r.out);
  REQUIRE(r.code == 0);
  CHECK(has(r.out, "step 2/4 | loss "));
  CHECK(has(r.out, "step 4/4 | loss "));
  CHECK(has(r.out, "tok/s"));
  CHECK(std::filesystem::exists(ck + "/step_00000004/model.safetensors"));
  Run e = run("--eval-only --resume " + ck);
  INFO(e.out);
  REQUIRE(e.code == 0);
  CHECK(has(e.out, "{\"eval_loss\": "));
  CHECK(has(e.out, "\"tokens\": 4096}"));  // eval_steps 4 × batch 4 × seq_len 256
  const std::string out = autosp::testing::scratch_path("export.safetensors");
  Run x = run("--resume " + ck + " --export " + out);
  INFO(x.out);
  CHECK(x.code == 0);
  CHECK(std::filesystem::file_size(out) > 461000 * 4);  // every parameter, fp32
}

TEST_CASE("the plan flag prints the memory plan and trains nothing", "[cli]") {
  Run r = run("--plan --set checkpoint.dir=" + autosp::testing::scratch_path("plan_ckpt"));
  INFO(r.out);
  CHECK(r.code == 0);
  CHECK(has(r.out, "parameters"));
  CHECK(has(r.out, "activations"));
  CHECK_FALSE(has(r.out, "| loss "));
  CHECK_FALSE(std::filesystem::exists(autosp::testing::scratch_dir() / "plan_ckpt"));
}

TEST_CASE("the dump-ir flag writes the graph before and after each pass", "[cli]") {
  const std::string dir = autosp::testing::scratch_path("ir");
  Run r = run("--plan --dump-ir " + dir);
  REQUIRE(r.code == 0);
  CHECK(std::filesystem::exists(dir + "/00-input.ir"));
  CHECK(std::filesystem::exists(dir + "/01-shard_sequence.ir"));
  CHECK(std::filesystem::exists(dir + "/02-chunk_mlp.ir"));
  std::ifstream f(dir + "/03-autodiff.ir");
  std::string text((std::istreambuf_iterator<char>(f)), {});
  CHECK(has(text, "graph @llama("));
  CHECK(has(text, "attention_backward("));
  CHECK(std::filesystem::exists(dir + "/04-recompute.ir"));
  CHECK(std::filesystem::exists(dir + "/05-zero_shard.ir"));
  CHECK(std::filesystem::exists(dir + "/06-fuse_accumulate.ir"));
  std::ifstream prog(dir + "/07-lowered.program");
  std::string program((std::istreambuf_iterator<char>(prog)), {});
  CHECK(has(program, "program: "));
  CHECK(has(program, " compute  embedding("));
}
