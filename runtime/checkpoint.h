// Training checkpoints. Layout under a root directory:
//
//   <root>/step_00000120/model.safetensors      parameters, Hugging Face names and layout
//                        optimizer.safetensors  AdamW moments: "<param>.exp_avg", "<param>.exp_avg_sq"
//                        state.json             {"step": 120, ...Checkpoint::state}
//
// A ZeRO run writes the sharded format instead (runtime/zero_checkpoint.h): the same step_*
// directory with zero_index.json and one shard_rank<r>.safetensors per rank besides
// state.json. Both formats count as complete checkpoints here (latest, keep-N pruning);
// load_checkpoint reads the single-writer format only, load_train_state reads both.
//
// A save builds everything in <root>/.tmp-step_00000120-<pid>, fsyncs it, renames the
// directory into place and fsyncs the root, so a crash or a full disk at any point leaves
// either the complete new checkpoint or none — the previous ones stay intact. Then the
// oldest step_* directories beyond `keep` are deleted (renamed away first, so a crash while
// deleting never leaves a half directory under a step_* name).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "runtime/safetensors.h"

namespace autosp::runtime {

struct Checkpoint {
  int64_t step = 0;        // filled by load (save takes the step as an argument)
  NamedTensors model;      // model.safetensors (host tensors)
  NamedTensors optimizer;  // optimizer.safetensors (host tensors)
  // state.json besides "step": data position, RNG seed, the config (trainer::to_json), …
  // Any JSON object; returned as written (without "step").
  nlohmann::json state = nlohmann::json::object();
  std::string path;  // filled by load: the step directory that was read
};

// "step_00000120"
std::string checkpoint_dir_name(int64_t step);
// The file that marks a step directory as a sharded (ZeRO) checkpoint.
inline constexpr const char* kZeroIndexFile = "zero_index.json";

// Writes <dir>/step_XXXXXXXX atomically (see above), then keeps the `keep` newest step
// directories (by step number). Saving a step that already exists replaces it. Returns an
// IoError naming the file on any write failure; the temporary directory is removed.
Status save_checkpoint(const std::string& dir, int64_t step, const Checkpoint& ckpt, int keep);

// `path` is a step directory, or a root directory (then its newest complete checkpoint).
// A sharded checkpoint is refused with an error pointing at load_train_state.
StatusOr<Checkpoint> load_checkpoint(const std::string& path);

// Path of the newest complete step_* directory under `root`; NotFound when there is none.
StatusOr<std::string> latest_checkpoint(const std::string& root);

// ---- helpers shared with zero_checkpoint.cc ----

// Renames the finished directory `tmp` to <root>/<name> (moving an existing one aside first:
// rename(2) cannot replace a non-empty directory) and fsyncs the root.
Status install_checkpoint_dir(const std::string& tmp, const std::string& root, const std::string& name);
// Deletes all but the `keep` newest complete step_* directories under `root` (either format),
// then fsyncs the root.
Status prune_checkpoints(const std::string& root, int keep);

// Test hook: make checkpoint writes fail like a full disk after `bytes` more bytes
// (-1 = off). Same switch as set_write_fault_after_bytes in safetensors.h.
inline void set_checkpoint_write_fault_after_bytes(int64_t bytes) { set_write_fault_after_bytes(bytes); }

}  // namespace autosp::runtime
