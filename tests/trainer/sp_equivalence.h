// Shared by the SP equivalence tests: the local-communicator Catch tests
// (test_sp_equivalence.cc) and the mpirun programs (tests/mpi_trainer/).
//
// Tolerance: the sequence-parallel run does the same fp32 arithmetic as the one-process run
// except for summation order — attention's online softmax merges key blocks in a different
// order, and each parameter gradient is a sum over ranks of partial sums instead of one sum.
// For the O(10^3)-term sums here that moves results by ~1e-6 relative; we allow 2e-5 of each
// tensor's largest magnitude (+1e-7 absolute). A real SP bug — a target dropped at a shard
// boundary, a rank's gradient missing or counted twice, a mask crossing documents — changes
// gradients by O(1/P) ≥ 25%.
#pragma once
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/comm.h"
#include "trainer/trainer.h"

namespace autosp::testing {

// A smaller model than configs/tiny-cpu.json (fast), or the tiny config itself (full_size).
inline trainer::Options sp_test_options(const std::vector<std::string>& extra, bool full_size = false) {
  const std::string data = std::string(AUTOSP_BINARY_DIR) + "/data/";
  std::vector<std::string> sets = {"data.train=" + data + "corpus_train.u16", "data.val=", "train.eval_every=0",
                                   "log.metrics_file=", "checkpoint.every=0"};
  if (!full_size)
    sets.insert(sets.end(), {"model.d_model=48", "model.n_heads=4", "model.n_kv_heads=4", "model.ffn_hidden=64",
                             "train.seq_len=64", "train.batch_size=2"});
  sets.insert(sets.end(), extra.begin(), extra.end());
  auto o = trainer::load_options(std::string(AUTOSP_SOURCE_DIR) + "/configs/tiny-cpu.json", sets);
  AUTOSP_CHECK(o.ok()) << o.status().message();
  return o.value();
}

// The one-process run that sees the same global batch: dp replicas × batch rows.
inline trainer::Options reference_options(const trainer::Options& o, int world) {
  trainer::Options r = o;
  r.parallel.sp = 1;
  r.train.batch_size = o.train.batch_size * (world / o.parallel.sp);
  return r;
}

struct StepRecord {
  std::vector<double> losses;
  std::vector<std::vector<float>> grads;  // of the first step, per parameter (empty when sharded: ZeRO 2-3)
  std::vector<std::string> strategies;
};

// Runs `steps` steps; the error (if any) is returned in `error`.
inline StepRecord record_steps(trainer::Trainer& t, int steps, std::string& error) {
  StepRecord r;
  for (int i = 0; i < steps; ++i) {
    auto s = t.train_step();
    if (!s.ok()) {
      error = s.status().message();
      return r;
    }
    r.losses.push_back(s->loss);
    if (i == 0)  // before any update makes the runs drift apart
      for (const auto& [name, g] : t.params().full_gradients())
        r.grads.emplace_back(g.data<float>(), g.data<float>() + g.numel());
  }
  for (const auto& d : t.sp_plan().attention) r.strategies.push_back(sp::strategy_name(d.strategy));
  return r;
}

// `steps` steps in one process (no communicator); aborts the test binary on failure.
inline StepRecord record_single(const trainer::Options& o, int steps) {
  auto t = trainer::Trainer::create(o);
  AUTOSP_CHECK(t.ok()) << t.status().message();
  std::string error;
  StepRecord r = record_steps(*t.value(), steps, error);
  AUTOSP_CHECK(error.empty()) << error;
  return r;
}

// `world` ranks as threads of one process over the local communicator (mem: how it moves
// the ranks' buffers; null for host memory; device_world: Trainer::create's); every rank's
// record. Throws a rank's error.
inline std::vector<StepRecord> record_local(const trainer::Options& o, int world, int steps,
                                            runtime::MemOps* mem = nullptr,
                                            const trainer::Trainer::DeviceWorld& device_world = nullptr) {
  std::vector<StepRecord> per_rank(static_cast<size_t>(world));
  runtime::run_local(
      world,
      [&](runtime::Communicator& c) {
        auto t = trainer::Trainer::create(o, "", &c, nullptr, device_world);
        if (!t.ok()) throw std::runtime_error(t.status().message());
        std::string error;
        per_rank[size_t(c.rank())] = record_steps(*t.value(), steps, error);
        if (!error.empty()) throw std::runtime_error(error);
      },
      mem);
  return per_rank;
}

// For runs that round differently (bf16 against f32, GPU against CPU; the tests say why
// their bounds hold): "" when each loss is within loss_rtol of ref's and each gradient
// within grad_rtol of its tensor's largest element in ref. That scale is floored at 1e-3 of
// the largest gradient of any parameter: a gradient that is exactly zero in exact arithmetic
// (a key bias: softmax ignores a shift shared by every key) is round-off in both runs.
inline std::string compare_rounded(const StepRecord& ref, const StepRecord& got, double loss_rtol,
                                   double grad_rtol) {
  std::ostringstream err;
  if (got.losses.size() != ref.losses.size()) return "different number of steps";
  for (size_t i = 0; i < ref.losses.size(); ++i)
    if (!(std::abs(got.losses[i] - ref.losses[i]) <= loss_rtol * std::abs(ref.losses[i])))
      err << "step " << i + 1 << ": loss " << got.losses[i] << " vs " << ref.losses[i] << "; ";
  if (got.grads.empty()) return err.str();  // gradients are sharded (ZeRO 2-3): losses only
  if (got.grads.size() != ref.grads.size()) return err.str() + "different parameter count";
  double largest = 0;
  for (const auto& g : ref.grads)
    for (float x : g) largest = std::max(largest, double(std::abs(x)));
  for (size_t k = 0; k < ref.grads.size(); ++k) {
    double scale = 1e-3 * largest, worst = 0;
    for (size_t i = 0; i < ref.grads[k].size(); ++i) {
      scale = std::max(scale, double(std::abs(ref.grads[k][i])));
      worst = std::max(worst, double(std::abs(got.grads[k][i] - ref.grads[k][i])));
    }
    if (!(worst <= grad_rtol * scale)) err << "parameter " << k << ": max |diff| " << worst << " vs " << scale << "; ";
  }
  return err.str();
}

// "" when loss i + 1 of `got` is within (i + 1) · loss_rtol of `ref`'s, relative: the bound
// grows with the step because round-off differences pass through Adam's updates.
inline std::string compare_losses(const std::vector<double>& ref, const std::vector<double>& got, double loss_rtol) {
  std::ostringstream err;
  if (got.size() != ref.size()) return "different number of steps";
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(std::abs(got[i] - ref[i]) <= loss_rtol * std::abs(ref[i]) * double(i + 1)))
      err << "step " << i + 1 << ": loss " << got[i] << " vs reference " << ref[i] << "; ";
  return err.str();
}

// "" when `got` matches `ref` (losses as compare_losses, gradients of the first step to 2e-5
// of each tensor's largest element); otherwise what differs.
inline std::string compare_records(const StepRecord& ref, const StepRecord& got, double loss_rtol = 2e-6) {
  std::ostringstream err;
  if (got.losses.size() != ref.losses.size()) return "different number of steps";
  err << compare_losses(ref.losses, got.losses, loss_rtol);
  if (got.grads.empty()) return err.str();  // gradients are sharded (ZeRO 2-3): losses only
  if (got.grads.size() != ref.grads.size()) return err.str() + "different parameter count";
  for (size_t k = 0; k < ref.grads.size(); ++k) {
    float scale = 0;
    for (float x : ref.grads[k]) scale = std::max(scale, std::abs(x));
    double worst = 0;
    for (size_t i = 0; i < ref.grads[k].size(); ++i)
      worst = std::max(worst, double(std::abs(got.grads[k][i] - ref.grads[k][i])));
    if (!(worst <= 2e-5 * scale + 1e-7))
      err << "parameter " << k << ": max |diff| " << worst << " vs max |grad| " << scale << "; ";
  }
  return err.str();
}

}  // namespace autosp::testing
