// What a compiled config will cost before it runs: memory per rank and communication per
// step, and the --plan report that prints them with the SP decisions.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "trainer/compile.h"

namespace autosp::trainer {

// Bytes per rank, known before anything runs.
struct MemoryPlan {
  int64_t params = 0, grads = 0, optimizer = 0;
  int64_t buffers = 0;  // ZeRO 1-2: the send buffer of the gathers after the update
  int64_t train_arena = 0, eval_arena = 0;
  int64_t workspace = 0;  // kernels' scratch beside the arena (kernel_workspace_bytes)
  int64_t num_params = 0;
  int64_t host = 0;  // offloaded activations' host arena (not in total(): device bytes)
  int64_t total() const {
    return params + grads + optimizer + buffers + std::max(train_arena, eval_arena) + workspace;
  }
};
MemoryPlan memory_plan(const Compiled& c);

// The scratch the kernels of `device` ("cpu" | "cuda") take beside the arena. CUDA, allocations
// that all stay: one workspace shared by the compute stream's kernels (the fused
// cross-entropy's tiles, kernels/cuda/cross_entropy.cu; norm and embedding backward
// scratch), the attention contexts' scratch (attention backward's fp32 dQ accumulator and row
// statistics; cuDNN keeps [B, H, T, D] fp32, and with packed documents its token-major
// statistics, [B, T, H] fp32), ring attention's buffers (ring_buffer_bytes) and the cuBLASLt
// workspace, each the largest any instruction needs, and each segment tensor's document starts
// (B·T + 1 int32, kept for cuDNN's ragged tables). CPU, the largest
// instruction's (kernels allocate per call): attention backward's row statistics, ring
// attention's buffers and, in a bf16 program, the f32 copies of the op's operands (the CPU
// runs bf16 through f32 kernels); per-thread tiles (kilobytes) and rope's angle tables (at
// most 1 MiB per thread, kernels/cpu/rope.cc) are left out.
int64_t kernel_workspace_bytes(const ir::Program& p, const std::string& device);

// What one training step sends per rank, by collective kind.
struct CommVolume {
  std::string kind;  // op name, with its group: "all_to_all (sp)"
  int64_t calls = 0, bytes = 0;
};
std::vector<CommVolume> communication_per_step(const ir::Program& p);
// The program's, and at ZeRO 1-2 the optimizer's gather of the updated buckets after it.
std::vector<CommVolume> step_communication(const Compiled& c);

// What is alive in the training step's arena at its peak, grouped by the instruction kind that
// made each tensor and its size, largest group first: where to look when a plan does not fit.
struct PeakGroup {
  std::string op;  // "matmul", "all_to_all", …
  int64_t count = 0, bytes_each = 0;
};
struct ArenaPeakReport {
  int at = -1, instructions = 0;
  std::string label;  // the instruction there, with its layer: "swiglu_backward (layer 10)"
  int64_t bytes = 0;
  std::vector<PeakGroup> groups;
};
ArenaPeakReport arena_peak_report(const ir::Program& p);

// The --plan report: mesh, layout, strategy per attention op with its reason, recompute
// policy, communication per step, memory per rank and what is alive at the arena's peak.
std::string format_plan(const Options& opts, const Compiled& c);

// Predicted step time, tokens/s and MFU on c.hardware, for the compiled strategy and (under
// SP) for each strategy forced in turn (compiled here unless auto compiled them already; no
// communicator needed).
struct StepPrediction {
  std::string label;  // "as planned (auto)", "ring", "hybrid -> ulysses" (what the forced one became)
  sp::StepCost cost;  // per optimizer step (micro-batches included), optimizer step included
  double tokens_per_s = 0, mfu = 0;
};
struct Prediction {
  double tokens_per_step = 0, flops_per_token = 0;
  std::vector<StepPrediction> steps;  // [0]: as planned
};
StatusOr<Prediction> predict(const Options& opts, const Compiled& c);
std::string format_prediction(const Options& opts, const Compiled& c, const Prediction& p);
// Everything --plan prints, as JSON (--plan-json FILE): model, step shape and mesh, attention
// decisions, recompute, communication, memory in bytes, predictions.
nlohmann::json plan_json(const Options& opts, const Compiled& c, const Prediction& p);

// Model FLOPs per token for MFU: 6·N_dense + 6·layers·d_model·seq_len (causal attention),
// N_dense = parameters other than the input embedding table.
double model_flops_per_token(const Options& opts, const Compiled& c);

// When the plan does not fit train.memory_gib: the same config planned again with one change
// each (ZeRO-3; activations offloaded to host memory; twice the SP degree on twice the ranks),
// with what each would need per rank and whether it fits. Empty when the plan fits.
StatusOr<std::string> format_alternatives(const Options& opts, const Compiled& c, const std::string& hardware);

// The longest train.seq_len whose planned memory per rank fits `budget_bytes` (recompute as
// opts.train.recompute, "auto" choosing per length), searched over multiples of `step`
// (2·sp, which every layout divides). 0 when even the shortest does not fit.
StatusOr<int64_t> longest_seq_len(const Options& opts, int world_size, int64_t budget_bytes,
                                  const std::string& hardware = "cpu");

}  // namespace autosp::trainer
