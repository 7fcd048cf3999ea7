#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>

namespace autosp::trainer {

float learning_rate(int64_t step, const TrainOptions& t) {
  if (step < t.warmup_steps) return float(t.lr * double(step + 1) / double(t.warmup_steps));
  if (step >= t.steps) return float(t.min_lr);
  const double span = double(t.steps - t.warmup_steps);  // > 0 here: warmup_steps ≤ step < steps
  const double progress = std::clamp(double(step - t.warmup_steps) / span, 0.0, 1.0);
  constexpr double kPi = 3.14159265358979323846;
  return float(t.min_lr + (t.lr - t.min_lr) * 0.5 * (1.0 + std::cos(kPi * progress)));
}

}  // namespace autosp::trainer
