#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>

namespace autosp::trainer {

float learning_rate(int64_t step, const TrainOptions& t) {
  if (step < t.warmup_steps) return float(t.lr * double(step + 1) / double(t.warmup_steps));
  if (t.lr_schedule == "constant") return float(t.lr);
  if (step >= t.steps) return float(t.min_lr);
  const int64_t span = t.steps - t.warmup_steps;  // > 0 here: warmup_steps ≤ step < steps
  if (t.lr_schedule == "wsd") {
    const int64_t decay = std::clamp<int64_t>(t.decay_steps > 0 ? t.decay_steps : span / 5, 1, span);
    const int64_t into = step - (t.steps - decay);  // < 0 in the stable phase
    return into < 0 ? float(t.lr) : float(t.lr - (t.lr - t.min_lr) * double(into) / double(decay));
  }
  const double progress = std::clamp(double(step - t.warmup_steps) / double(span), 0.0, 1.0);
  if (t.lr_schedule == "linear") return float(t.lr - (t.lr - t.min_lr) * progress);
  constexpr double kPi = 3.14159265358979323846;
  return float(t.min_lr + (t.lr - t.min_lr) * 0.5 * (1.0 + std::cos(kPi * progress)));
}

}  // namespace autosp::trainer
