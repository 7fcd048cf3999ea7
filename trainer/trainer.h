// Trainer: compiles the model for one training step (and a forward-only eval step), owns
// parameters and optimizer state, and runs steps, evals and checkpoints. main.cc wraps it
// in the CLI; tests drive it directly.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/status.h"
#include "runtime/comm.h"
#include "runtime/executor.h"
#include "runtime/mesh.h"
#include "runtime/param_state.h"
#include "sp_compiler/sp_plan.h"
#include "trainer/compile.h"
#include "trainer/plan_report.h"
#include "trainer/config.h"
#include "trainer/data.h"
#include "trainer/shard_feed.h"

namespace autosp::trainer {

struct StepResult {
  int64_t step = 0;  // steps completed after this one
  double loss = 0, grad_norm = 0, lr = 0;
  double exposed_comm_ms = 0;  // communication the step waited for (not hidden behind compute)
  int64_t tokens = 0;  // scored targets this step
};

struct EvalResult {
  double loss = 0;     // mean over scored tokens of all eval batches
  int64_t tokens = 0;  // scored tokens
};

class Trainer {
 public:
  // How a device run's ranks talk, made from the bootstrap `world` and the backend (whose
  // communication stream a stream-ordered communicator enqueues on).
  using DeviceWorld =
      std::function<std::unique_ptr<runtime::Communicator>(runtime::Communicator& world, runtime::Backend& backend)>;

  // dump_ir_dir: when set, the graph is written there before and after each pass.
  // world: every rank of the run (MPI or local); null = one process. Collective: every rank
  // of `world` calls create, and later each step, together. backend: where to run; null
  // makes the one train.device names (tests pass their own to watch what the runtime does).
  // device_world: the communicator of a device run's mesh; null = NCCL under mpirun, else
  // `world` itself (a local test's ranks share one GPU through the local communicator).
  // Tests on one GPU pass a stream-ordered stand-in for NCCL (tests/cuda/stream_comm.h).
  static StatusOr<std::unique_ptr<Trainer>> create(const Options& opts, const std::string& dump_ir_dir = "",
                                                   runtime::Communicator* world = nullptr,
                                                   std::unique_ptr<runtime::Backend> backend = nullptr,
                                                   const DeviceWorld& device_world = nullptr);

  // Loads parameters, optimizer moments and the step from a checkpoint (a step directory or
  // a checkpoint root) of any ZeRO stage and world size; the model must match this config.
  Status resume(const std::string& path);
  // One optimizer step on the next batch. Errors on a non-finite loss or gradient norm
  // (naming the step), leaving parameters as they were before the step.
  StatusOr<StepResult> train_step();
  // Loss over train.eval_steps batches of data.val.
  StatusOr<EvalResult> evaluate();
  // Writes a checkpoint of the current step under checkpoint.dir (rank 0 writes: parameters
  // and optimizer state are replicated; the others wait for it).
  Status save_checkpoint() const;

  int64_t step() const { return step_; }
  const Options& options() const { return opts_; }
  runtime::ParameterState& params() { return *params_; }
  const MemoryPlan& memory_plan() const { return plan_mem_; }
  bool has_val() const { return val_.has_value(); }
  // The sequence-parallel plan (empty attention list when the world is one rank).
  const sp::SpPlan& sp_plan() const { return plan_; }
  int rank() const { return world_ ? world_->rank() : 0; }
  // The training step's executor (per-op timings for --profile, traces for --trace).
  runtime::Executor& train_executor() { return *train_; }
  int world_size() const { return world_ ? world_->size() : 1; }
  // Peak device memory of this process's GPU allocations (0 on the CPU: see peak RSS there).
  int64_t device_peak_bytes() const { return backend_->peak_bytes(); }
  // Model FLOPs utilisation of a throughput (tokens/s over all ranks): 6·N_dense + 6·L·d·T
  // FLOPs per token (--plan's count) against the cost model's peak per rank (train.hardware:
  // 989 TFLOP/s on H100/H200, 380 GFLOP/s for the CPU preset) times the ranks.
  double mfu(double tokens_per_s) const {
    return tokens_per_s * flops_per_token_ / (peak_flops_ * double(world_size()));
  }

 private:
  explicit Trainer(const Options& o) : opts_(o) {}
  Options opts_;
  runtime::Communicator* world_ = nullptr;
  std::unique_ptr<runtime::Backend> backend_;            // before everything holding its memory
  std::unique_ptr<runtime::Communicator> device_world_;  // NCCL over world, on a GPU under mpirun
  std::unique_ptr<runtime::Mesh> mesh_;
  sp::SpPlan plan_;
  ShardSpec shard_;
  std::unique_ptr<runtime::ParameterState> params_;
  std::unique_ptr<runtime::Executor> train_, eval_;
  std::optional<DataLoader> train_data_, val_;
  MemoryPlan plan_mem_;
  double flops_per_token_ = 0, peak_flops_ = 1;
  int64_t step_ = 0;
};

}  // namespace autosp::trainer
