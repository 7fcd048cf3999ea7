// accumulate_gradients: gradient accumulation over micro-batches as a graph rewrite. Every
// gradient output ("grad.<p>", or ZeRO's "grad_bucket.<b>" / "grad_shard.<b>") becomes
// `accumulated.<output> + gradient`, with "accumulated.<output>" a new input argument of the
// same type. The runtime binds that input and the output to the same tensor and zeroes it
// before an optimizer step's first micro-batch, so each micro-batch adds its gradient in
// place: no second gradient buffer (the add folds into the last GEMM where fuse_accumulate
// can). Runs after zero_shard, so what is added is what this rank keeps: the all-reduced
// gradient, the whole bucket, or this rank's reduce-scattered shard. The loss seed carries
// the 1/micro-batches scale, so the sum is the mean over the optimizer step's batches.
#pragma once
#include <memory>

#include "ir/buckets.h"
#include "sp_compiler/pass.h"

namespace autosp::sp {

using ir::kAccumulatedPrefix;

std::unique_ptr<Pass> make_accumulate_gradients_pass();

}  // namespace autosp::sp
