// Where parameters, gradients and optimizer state live on a rank, and how they are updated
// and checkpointed. Two implementations: replicated (ZeRO stage 0: everything whole on every
// rank; runtime/params.h) and ZeRO stages 1-3 (flat buckets, this rank's shard of the
// optimizer state, gradients and, at stage 3, parameters; runtime/zero_params.cc).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ir/buckets.h"
#include "runtime/comm.h"
#include "runtime/executor.h"
#include "runtime/params.h"
#include "runtime/safetensors.h"
#include "runtime/zero_checkpoint.h"

namespace autosp::runtime {

// Bytes this rank keeps for the whole run (activations are the arena, apart).
struct PersistentBytes {
  int64_t params = 0, grads = 0, optimizer = 0;
  int64_t buffers = 0;  // ZeRO 1-2: the send buffer of the gathers after the update
  int64_t total() const { return params + grads + optimizer + buffers; }
};

class ParameterState {
 public:
  virtual ~ParameterState() = default;
  virtual void initialize(uint64_t seed) = 0;
  // Binds the program's parameter arguments and gradient outputs to this state's tensors.
  virtual Status bind(Executor& ex) = 0;
  // Zeroes the gradients the program accumulates into (train.grad_accum_steps > 1: before
  // an optimizer step's first micro-batch).
  virtual void zero_gradients() = 0;
  // Global gradient norm, before clipping (collective under ZeRO: an all_reduce of squares).
  virtual double grad_norm() = 0;
  // One AdamW step; grad_scale folds in clipping. Under ZeRO 1-2 it ends with the all_gather
  // of the updated parameter shards.
  virtual void update(const AdamWConfig& cfg, float lr, int64_t step, float grad_scale) = 0;
  virtual PersistentBytes persistent_bytes() const = 0;
  virtual int64_t num_elements() const = 0;
  // Full f32 parameters by name: views of the live tensors when this rank holds them whole in
  // f32 (stages 0-2; writing to them changes the model), else gathered copies of the f32
  // shards (stage 3, and a bf16 program's matrices at stages 1-2): collective under ZeRO.
  virtual NamedTensors full_parameters() = 0;
  // Full gradients by name when this rank holds them whole (stages 0 and 1), else empty.
  virtual NamedTensors full_gradients() = 0;
  // Checkpoint of the current state (collective when world is set).
  virtual Status save(Communicator* world, const std::string& dir, int64_t step, const nlohmann::json& state,
                      int keep) = 0;
  // Restores from a checkpoint of any stage and world size (see zero_checkpoint.h).
  virtual Status load(const TrainState& s) = 0;
};

// backend: where the live tensors are; a device backend keeps them there (the host copy is a
// mirror for checkpoints), null or the CPU keeps them on the host.
std::unique_ptr<ParameterState> make_replicated_state(const std::vector<ParamSpec>& specs,
                                                      Backend* backend = nullptr);
// world: the host communicator of every rank. On a device backend the buckets live on the
// device and the gather after each update runs over device_world (the mesh's world: NCCL, or
// a local communicator moving device buffers; null: world).
std::unique_ptr<ParameterState> make_zero_state(const ir::BucketPlan& plan, Communicator& world,
                                                Communicator* device_world = nullptr, Backend* backend = nullptr);

}  // namespace autosp::runtime
