// Progress lines and the metrics JSON Lines file.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/test_util.h"
#include "trainer/progress.h"

using namespace autosp::trainer;

TEST_CASE("human units are short and readable") {
  CHECK(human_count(950) == "950");
  CHECK(human_count(48213) == "48.2k");
  CHECK(human_count(3.5e6) == "3.50M");
  CHECK(human_bytes(512) == "512 B");
  CHECK(human_bytes(35.1 * 1024 * 1024) == "35.1 MiB");
  CHECK(human_bytes(3.0 * 1024 * 1024 * 1024) == "3.00 GiB");
  CHECK(human_duration(3.4) == "0:00:03");
  CHECK(human_duration(3723) == "1:02:03");
  CHECK(human_duration(NAN) == "?:??:??");
}

TEST_CASE("the progress line shows every number on one aligned line") {
  StepStats s{40, 200, 2.34123, 2.95e-3, 0.8123, 48213, 21.34, 35 * 1024 * 1024, 3.4};
  CHECK(format_progress_line(s) ==
        "step  40/200 | loss 2.3412 | lr 2.95e-03 | gnorm 0.812 | 48.2k tok/s | 21.3 ms/step | mem 35.0 MiB | "
        "eta 0:00:03");
  s.step = 200;
  CHECK(format_progress_line(s).rfind("step 200/200 |", 0) == 0);  // same width as step 40
  s.comm_ms = 1.25;  // several ranks: the exposed communication joins the line
  CHECK(format_progress_line(s).find("| 21.3 ms/step | comm 1.2 ms | mem ") != std::string::npos);
  s.mfu = 0.4137;  // a trainer's run: the utilisation follows the throughput
  CHECK(format_progress_line(s).find("| 48.2k tok/s | mfu 41.4% | 21.3 ms/step |") != std::string::npos);
  CHECK(format_eval_line(50, 200, 2.10344, 4096) == "eval step  50/200 | val loss 2.1034 | 4.1k tokens");
}

TEST_CASE("the metrics writer creates directories and writes one JSON object per line") {
  const std::filesystem::path dir = autosp::testing::scratch_path("progress");
  const std::string path = (dir / "a" / "b" / "m.jsonl").string();
  {
    auto w = MetricsWriter::open(path, false);
    REQUIRE(w.ok());
    StepStats first{10, 100, 2.5, 1e-3, 0.5, 1000, 20, 4096, 1};
    first.mfu = 0.25;
    REQUIRE(w->write(first).ok());
    REQUIRE(w->write({20, 100, NAN, 1e-3, 0.5, 1000, 20, 4096, 1}, 2.25).ok());
  }
  {
    auto w = MetricsWriter::open(path, true);  // a resumed run appends
    REQUIRE(w.ok());
    REQUIRE(w->write({30, 100, 1.5, 1e-3, 0.5, 1000, 20, 4096, 1}).ok());
  }
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  REQUIRE(lines.size() == 3);
  for (const char* k : {"step", "loss", "lr", "grad_norm", "tokens_per_s", "step_ms", "mem_bytes"})
    CHECK(lines[0].contains(k));
  CHECK(lines[0]["step"] == 10);
  CHECK(lines[0]["mfu"] == 0.25);
  CHECK(!lines[1].contains("mfu"));  // not measured: not written
  CHECK(!lines[0].contains("eval_loss"));
  CHECK(lines[1]["loss"].is_null());  // NaN has no JSON spelling
  CHECK(lines[1]["eval_loss"] == 2.25);
  CHECK(lines[2]["step"] == 30);
  // Reopening without append starts over.
  REQUIRE(MetricsWriter::open(path, false).ok());
  CHECK(std::filesystem::file_size(path) == 0);
}
