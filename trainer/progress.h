// What rank 0 shows while training: one human-readable line per log.every steps, eval
// lines, and the same numbers as JSON Lines in log.metrics_file (read by
// scripts/plot_metrics.py).
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "core/status.h"

namespace autosp::trainer {

struct StepStats {
  int64_t step = 0;          // steps completed (the line for step 40 is printed after it)
  int64_t total_steps = 0;   // train.steps
  double loss = 0;           // training loss of this step (or the mean since the last line)
  double lr = 0;
  double grad_norm = 0;      // global norm before clipping
  double tokens_per_s = 0;   // all ranks together
  double step_ms = 0;        // wall time per step
  int64_t mem_bytes = 0;     // peak memory the run added on this rank (GPU: device allocations)
  double eta_s = 0;          // estimated seconds to train.steps
  double comm_ms = -1;       // exposed communication per step (waited for, not overlapped); < 0: one rank
  double mfu = -1;           // model FLOPs utilisation (Trainer::mfu); < 0: not shown
};

// "step   40/200 | loss 2.3412 | lr 2.95e-03 | gnorm 0.812 | 48.2k tok/s | mfu 12.3% |
//  21.3 ms/step | comm 1.2 ms | mem 35.1 MiB | eta 0:00:03" (one line, no newline; comm only
//  with several ranks).
std::string format_progress_line(const StepStats& s);
// "eval step   50/200 | val loss 2.1034 | 4.1k tokens"
std::string format_eval_line(int64_t step, int64_t total_steps, double eval_loss, int64_t tokens);

// Human units: 48200 → "48.2k", 3.5e6 → "3.50M"; bytes → "35.1 MiB"; seconds → "1:02:03".
std::string human_count(double v);
std::string human_bytes(double bytes);
std::string human_duration(double seconds);

// Appends one JSON object per line: step, loss, lr, grad_norm, tokens_per_s, mfu, step_ms,
// mem_bytes, and eval_loss when given. Each line is flushed, so a crash loses nothing
// already logged. Non-finite numbers are written as null (JSON has no NaN).
class MetricsWriter {
 public:
  // Creates parent directories. append = false truncates (a fresh run); true continues the
  // file (a resumed run).
  static StatusOr<MetricsWriter> open(const std::string& path, bool append);
  Status write(const StepStats& s, std::optional<double> eval_loss = std::nullopt);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::shared_ptr<std::FILE> file_;
};

}  // namespace autosp::trainer
