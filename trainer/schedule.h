// Learning-rate schedule: linear warmup, then train.lr_schedule down to min_lr.
#pragma once
#include <cstdint>

#include "trainer/config.h"

namespace autosp::trainer {

// Learning rate for optimizer step `step` (0-based):
//   step < warmup_steps:          lr · (step + 1) / warmup_steps   (lr/warmup at step 0, not 0,
//                                 so the first update already moves the weights)
//   warmup_steps ≤ step < steps,  progress = (step − warmup_steps) / (steps − warmup_steps):
//     cosine:    min_lr + (lr − min_lr) · ½(1 + cos(π · progress))
//     linear:    lr − (lr − min_lr) · progress
//     constant:  lr
//     wsd:       lr until the last D = decay_steps (0: a fifth of steps − warmup_steps, at
//                least 1) steps, then lr − (lr − min_lr) · (step − (steps − D)) / D
//   step ≥ steps:                 min_lr (constant: lr)
// A pure function of step, so a resumed run continues on the same curve.
float learning_rate(int64_t step, const TrainOptions& t);

}  // namespace autosp::trainer
