// Learning-rate schedule: linear warmup, then cosine decay to min_lr.
#pragma once
#include <cstdint>

#include "trainer/config.h"

namespace autosp::trainer {

// Learning rate for optimizer step `step` (0-based):
//   step < warmup_steps:          lr · (step + 1) / warmup_steps   (lr/warmup at step 0, not 0,
//                                 so the first update already moves the weights)
//   warmup_steps ≤ step < steps:  min_lr + (lr − min_lr) · ½(1 + cos(π · progress)),
//                                 progress = (step − warmup_steps) / (steps − warmup_steps)
//   step ≥ steps:                 min_lr
// A pure function of step, so a resumed run continues on the same curve.
float learning_rate(int64_t step, const TrainOptions& t);

}  // namespace autosp::trainer
