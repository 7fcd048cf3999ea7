// Compiles a config into the programs every rank runs: the model's forward graph, the SP
// plan, then for the training step shard_sequence → chunk_mlp → autodiff → recompute →
// zero_shard → [accumulate_gradients] → [offload_activations] → fuse_accumulate → lower
// (schedule, memory plan), and for eval shard_sequence → zero_shard → fuse_accumulate →
// lower. Needs no communicator, so `--plan` can compile for a world it is not in.
#pragma once
#include <string>
#include <vector>

#include "core/status.h"
#include "ir/buckets.h"
#include "ir/graph.h"
#include "ir/program.h"
#include "sp_compiler/cost_model.h"
#include "sp_compiler/recompute.h"
#include "sp_compiler/sp_plan.h"
#include "trainer/config.h"

namespace autosp::trainer {

struct Compiled {
  sp::Hardware hardware;  // what the cost model and sp_strategy "auto" assume
  std::string device;     // train.device: which kernels' workspace the memory plan counts
  sp::SpOptions mesh;
  ir::Graph forward;  // the single-device model, as written
  sp::SpPlan plan;    // strategies and token layout (trivial for one rank)
  ir::BucketPlan buckets;  // ZeRO buckets (stage 0: unused)
  sp::RecomputePolicy recompute = sp::RecomputePolicy::none;
  int mlp_chunks = 1;  // the training step's MLPs run over this many sequence slices
  std::string recompute_reason;
  // train.grad_accum_steps > 1: each gradient output adds onto its "accumulated.<output>"
  // input (sp_compiler/accumulate_gradients.h).
  bool accumulate_gradients = false;
  bool offload = false;  // the training step parks kept activations in host memory
  ir::Program train, eval;
  // sp_strategy "auto" over several SP ranks compiles each strategy forced on every op to
  // choose; their predicted training steps stay here for --plan's table.
  struct Forced {
    std::string strategy;  // the strategy forced
    std::string got;       // what the first attention op got (heads a strategy cannot split fall back)
    sp::StepCost cost;     // one micro-batch's training program
  };
  std::vector<Forced> forced;
};

// Whether a compiled step fits train.memory_gib per rank on the device and, with offloaded
// activations, train.host_memory_gib in host memory (a budget of 0 holds anything).
bool fits_budgets(const Options& opts, const Compiled& c);

// The cost-model preset a run compiles for (sp::hardware names): train.hardware, or under
// "auto" cpu for the CPU runtime and the GPU's for train.device cuda: h200 when device_name
// names an H200, else h100 (an unknown or absent GPU, as under --plan on a CPU machine; the
// presets differ only in HBM bandwidth).
std::string hardware_preset(const Options& opts, const std::string& device_name);

// sp_strategy "auto"'s whole-step choice among plans that fit: the fastest, unless another
// within 1% of its predicted step needs less memory (within 1% the predictions tie, and the
// smaller plan keeps more headroom); the least memory among those, then the faster. The index.
struct PlanCost {
  double step_s;
  int64_t bytes;
};
size_t pick_plan(const std::vector<PlanCost>& plans);

// dump_ir_dir: when set, the training graph is written there before and after each pass.
// hardware: a name for sp::hardware() ("cpu" for the CPU runtime).
StatusOr<Compiled> compile(const Options& opts, int world_size, const std::string& dump_ir_dir = "",
                           const std::string& hardware = "cpu");

// The SP strategies sp_strategy "auto" weighs against each other, each forced on every op.
inline constexpr const char* kForcedStrategies[] = {"ulysses", "ring", "hybrid"};
// The config compiled with `strategy` forced on every attention op, and what that gave: the
// strategy the first op got (heads a strategy cannot split fall back) and the predicted
// training program (one micro-batch).
struct ForcedCompile {
  Compiled compiled;
  Compiled::Forced forced;
};
StatusOr<ForcedCompile> compile_forced(const Options& opts, int world_size, const std::string& hardware,
                                       const std::string& strategy);

// Whether some plan for this config fits train.memory_gib (and train.host_memory_gib): what
// compile() would then pick fits. Faster than compile() under sp_strategy "auto", which
// compiles every strategy to compare speeds: this stops at the first that fits (the per-op
// choice first).
StatusOr<bool> some_plan_fits(const Options& opts, int world_size, const std::string& hardware);

}  // namespace autosp::trainer
