// Sharded (ZeRO) checkpoints, and reading any checkpoint into a world-size-independent
// training state. Layout of a sharded step directory:
//
//   <root>/step_00000120/zero_index.json          {"format": "autosp-zero", "version": 1, "world": P,
//                                                  "stage": s, "buckets": [{"name", "numel", "padded",
//                                                  "params": [{"name", "shape", "offset", "init"}]}]}
//                        shard_rank<r>.safetensors rank r's slice [r·S, (r+1)·S) of every bucket, S =
//                                                  padded / P: "<bucket>.param", "<bucket>.exp_avg",
//                                                  "<bucket>.exp_avg_sq", each f32 [S]
//                        state.json                {"step": 120, ...state}
//
// Every rank writes its own shard, so no rank ever holds the full model. The save is as atomic
// as the single-writer one (runtime/checkpoint.h): all files go into one temporary directory
// that rank 0 renames into place only after every rank reported success, so a failure on any
// rank leaves the previous checkpoints as they were. load_train_state reads either format,
// written by any world size and stage, into full per-parameter tensors: resuming with another
// world size (or exporting) is "load the full view, then cut the new shards" (shard_train_state).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "ir/buckets.h"
#include "runtime/comm.h"
#include "runtime/safetensors.h"

namespace autosp::runtime {

// Training state per parameter, independent of world size and ZeRO stage: what a resume or
// an export needs. Tensors are full (unsharded) f32, keyed by parameter name.
struct TrainState {
  int64_t step = 0;
  nlohmann::json state = nlohmann::json::object();  // as passed to save (data position, seed, config)
  // exp_avg / exp_avg_sq keyed by the parameter name. f32, except a pretrained start's
  // parameters (runtime/pretrained.h), which keep the file's f32 or bf16 and may view a
  // read-only mapping of it: readers take them through read_as_f32.
  NamedTensors params, exp_avg, exp_avg_sq;
  bool zero_moments = false;  // no optimizer state (a pretrained model): AdamW starts from zero
  std::string path;                                 // the step directory read
};

// dst[0, n) := elements [begin, begin + n) of t (f32 or bf16) as f32.
void read_as_f32(const Tensor& t, int64_t begin, int64_t n, float* dst);

// This rank's shards, one tensor per bucket in plan order, each [shard_numel].
struct RankShards {
  std::vector<Tensor> param, exp_avg, exp_avg_sq;
};

// Collective over `world` (plan.world must equal world.size()): writes <dir>/step_XXXXXXXX/
// as above. Every rank must call it with the same dir, step, plan and keep; rank 0's `state`
// is written. All ranks write into one temporary directory (rank 0 creates it and broadcasts
// its name), each fsyncs its file, and failures are agreed by an all_reduce of per-rank error
// flags; then rank 0 writes the index and state, fsyncs, renames into place, fsyncs the root
// and prunes to the `keep` newest step_* directories of either format. On any rank's failure
// the temporary directory is removed and every rank returns the same error: the first failing
// rank's, naming its file. A step that already exists is replaced.
Status save_sharded_checkpoint(Communicator& world, const std::string& dir, int64_t step, const ir::BucketPlan& plan,
                               const RankShards& mine, const nlohmann::json& state, int keep);

// Reads either format — the single-writer checkpoint (model/optimizer.safetensors) or a
// sharded one written by any world size and stage — into full per-parameter tensors
// (concatenating the shards of each bucket, dropping the padding). `path` is a step
// directory or a root (then its newest complete checkpoint). Parameters come in the file's
// order (single-writer) or the plan's (sharded); the moments in the same order. Errors name
// the file: a shard file missing for the index's world size, shapes or offsets inconsistent
// with the index, a tensor missing.
StatusOr<TrainState> load_train_state(const std::string& path);

// Cuts rank `rank`'s shards of `plan` out of a full training state (the padding is zero), so
// a run resumes from a checkpoint written with any world size or stage. Every parameter of
// the plan must be in `s` with the plan's shape; parameters `s` has beyond the plan are an
// error too (a model/checkpoint mismatch).
StatusOr<RankShards> shard_train_state(const TrainState& s, const ir::BucketPlan& plan, int rank);

// Writes one consolidated safetensors file of the parameters (HF names, [out, in] layout as
// the models define them, metadata format=pt) from any checkpoint (a step directory or a
// root), atomically. Optimizer moments are not exported.
Status export_consolidated(const std::string& checkpoint_path, const std::string& out_file);

// Test hook: the shard write of world rank `rank` fails like a full disk (-1 = off).
// Process-wide; the byte-counting hook in safetensors.h cannot single out one of several
// ranks running as threads.
void set_zero_checkpoint_fault_rank(int rank);

}  // namespace autosp::runtime
