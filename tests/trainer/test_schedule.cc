// Learning-rate schedules: warmup, then cosine, linear, constant or warmup-stable-decay to the
// floor; values checked against the formulas written out here.
#include <catch2/catch.hpp>

#include <cmath>

#include "trainer/schedule.h"

using namespace autosp::trainer;

namespace {
TrainOptions opts(int64_t steps, int64_t warmup, double lr, double min_lr, const char* schedule = "cosine") {
  TrainOptions t;
  t.lr_schedule = schedule;
  t.steps = steps;
  t.warmup_steps = warmup;
  t.lr = lr;
  t.min_lr = min_lr;
  return t;
}
}  // namespace

TEST_CASE("warmup rises linearly from lr/warmup to lr") {
  auto t = opts(100, 10, 1e-3, 1e-4);
  CHECK(learning_rate(0, t) == Approx(1e-4));
  CHECK(learning_rate(4, t) == Approx(5e-4));
  CHECK(learning_rate(9, t) == Approx(1e-3));
  for (int64_t s = 1; s < 10; ++s) CHECK(learning_rate(s, t) > learning_rate(s - 1, t));
}

TEST_CASE("after warmup the rate follows a cosine from lr down to min_lr") {
  auto t = opts(110, 10, 1e-3, 1e-4);
  CHECK(learning_rate(10, t) == Approx(1e-3));
  CHECK(learning_rate(60, t) == Approx(5.5e-4));  // halfway: the mean of lr and min_lr
  const double q = 1e-4 + 0.9e-3 * 0.5 * (1 + std::cos(M_PI * 0.25));
  CHECK(learning_rate(35, t) == Approx(q));
  for (int64_t s = 11; s < 110; ++s) CHECK(learning_rate(s, t) <= learning_rate(s - 1, t));
  CHECK(learning_rate(110, t) == Approx(1e-4));
  CHECK(learning_rate(500, t) == Approx(1e-4));
}

TEST_CASE("without warmup the first step uses the peak rate") {
  CHECK(learning_rate(0, opts(50, 0, 2e-3, 0)) == Approx(2e-3));
}

TEST_CASE("a warmup longer than training never divides by zero") {
  auto t = opts(5, 10, 1e-3, 1e-4);
  CHECK(learning_rate(4, t) == Approx(5e-4));
  CHECK(std::isfinite(learning_rate(9, t)));
  CHECK(learning_rate(10, t) == Approx(1e-4));
}

TEST_CASE("linear decay falls by equal steps from lr to min_lr") {
  auto t = opts(110, 10, 1e-3, 1e-4, "linear");
  CHECK(learning_rate(9, t) == Approx(1e-3));  // warmup as before
  CHECK(learning_rate(10, t) == Approx(1e-3));
  CHECK(learning_rate(35, t) == Approx(1e-3 - 0.9e-3 * 0.25));
  CHECK(learning_rate(60, t) == Approx(5.5e-4));
  CHECK(learning_rate(109, t) == Approx(1e-3 - 0.9e-3 * 0.99));
  CHECK(learning_rate(110, t) == Approx(1e-4));
}

TEST_CASE("constant stays at lr after warmup, past the last step too") {
  auto t = opts(110, 10, 1e-3, 1e-4, "constant");
  CHECK(learning_rate(0, t) == Approx(1e-4));
  for (int64_t s : {10, 60, 109, 110, 500}) CHECK(learning_rate(s, t) == Approx(1e-3));
}

TEST_CASE("wsd holds lr, then decays linearly over the last decay_steps") {
  auto t = opts(110, 10, 1e-3, 1e-4, "wsd");
  // decay_steps 0: a fifth of the 100 steps after warmup, so the decay starts at step 90.
  for (int64_t s : {10, 50, 89}) CHECK(learning_rate(s, t) == Approx(1e-3));
  CHECK(learning_rate(90, t) == Approx(1e-3));
  CHECK(learning_rate(100, t) == Approx(1e-3 - 0.9e-3 * 0.5));
  CHECK(learning_rate(109, t) == Approx(1e-3 - 0.9e-3 * 19.0 / 20.0));
  CHECK(learning_rate(110, t) == Approx(1e-4));
  t.decay_steps = 50;  // from step 60
  CHECK(learning_rate(59, t) == Approx(1e-3));
  CHECK(learning_rate(85, t) == Approx(1e-3 - 0.9e-3 * 0.5));
  t.decay_steps = 1000;  // longer than training: the decay spans the steps after warmup
  CHECK(learning_rate(10, t) == Approx(1e-3));
  CHECK(learning_rate(60, t) == Approx(5.5e-4));
}
