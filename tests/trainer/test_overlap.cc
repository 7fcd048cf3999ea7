// Overlapped communication at run time: the same numbers with overlap on and off, and, with
// a fixed latency injected into every collective, the step waits for far less than the total
// latency when overlapped and at least all of it when not.
#include <catch2/catch.hpp>
#include <algorithm>
#include <mutex>

#include "tests/delay_comm.h"
#include "sp_equivalence.h"

using namespace autosp;
using namespace autosp::testing;
using autosp::trainer::Options;
using autosp::trainer::Trainer;

namespace {

struct Run {
  std::vector<double> losses, exposed_ms;
  int64_t collectives_per_step = 0;
};

Run train(const Options& o, int world, int steps, std::chrono::microseconds delay) {
  std::vector<Run> per_rank(world);
  runtime::run_local(world, [&](runtime::Communicator& c) {
    DelayComm slow(c, delay);
    auto t = Trainer::create(o, "", &slow);
    if (!t.ok()) throw std::runtime_error(t.status().message());
    Run r;
    for (int i = 0; i < steps; ++i) {
      const int64_t before = slow.calls();
      auto s = t.value()->train_step();
      if (!s.ok()) throw std::runtime_error(s.status().message());
      r.losses.push_back(s->loss);
      r.exposed_ms.push_back(s->exposed_comm_ms);
      r.collectives_per_step = slow.calls() - before;
    }
    per_rank[c.rank()] = std::move(r);
  });
  return per_rank[0];
}

// Load from other processes only ever adds waiting, so the least over steps 2.. is the
// estimate of what the schedule achieves (step 1 pays for first-touch page faults).
double least_after_first(const std::vector<double>& v) { return *std::min_element(v.begin() + 1, v.end()); }

}  // namespace

TEST_CASE("overlap on and off give bit-identical losses", "[overlap]") {
  for (const char* zero : {"0", "2", "3"}) {
    DYNAMIC_SECTION("zero " << zero) {
      const Options on = sp_test_options({"parallel.sp=2", "parallel.sp_strategy=ulysses", "parallel.overlap=true",
                                          std::string("parallel.zero_stage=") + zero});
      Options off = on;
      off.parallel.overlap = false;
      CHECK(train(on, 4, 3, std::chrono::microseconds(0)).losses == train(off, 4, 3, std::chrono::microseconds(0)).losses);
    }
  }
}

TEST_CASE("injected latency is hidden behind compute with overlap and fully exposed without", "[overlap]") {
  // dp = 2: the gradients' all-reduces (one per parameter: buckets of one tensor each) can
  // run while the rest of the backward computes; the loss's three all-reduces cannot. 2 ms
  // per collective.
  const auto delay = std::chrono::milliseconds(2);
  // The tiny config's model at seq_len 512: a backward long enough (tens of ms) to hide them.
  const Options on = sp_test_options({"parallel.sp=1", "parallel.overlap=true", "train.seq_len=512",
                                      "parallel.bucket_mb=0.000001"},
                                     /*full_size=*/true);
  Options off = on;
  off.parallel.overlap = false;
  const Run b = train(off, 2, 5, delay);
  const double injected = double(b.collectives_per_step) * 2.0;  // ms per step
  REQUIRE(injected >= 40.0);
  // Serially every collective's latency is waited for: the sleeps guarantee at least this,
  // however loaded the machine is.
  CHECK(least_after_first(b.exposed_ms) >= injected);
  // Overlapped, the per-parameter reductions hide behind the backward: well under half. A
  // machine busy with other tests can starve a rank for a whole step, so take the best of
  // three runs.
  double best = 1e30;
  for (int attempt = 0; attempt < 3 && best >= 0.5 * injected; ++attempt) {
    const Run a = train(on, 2, 5, delay);
    REQUIRE(a.collectives_per_step == b.collectives_per_step);
    best = std::min(best, least_after_first(a.exposed_ms));
  }
  INFO("injected " << injected << " ms/step; exposed with overlap " << best << " ms");
  CHECK(best < 0.5 * injected);
}
