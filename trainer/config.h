// The training config: one options struct per JSON section, field names identical to the
// JSON keys (other tools read the same keys). Missing keys take the defaults written here,
// which describe the tiny CPU model of configs/tiny-cpu.json.
//
// Loading is two steps so that each error names what the user wrote:
//   load_options(path, sets)  — parse the file, apply --set overrides, check keys and types;
//   validate(options, world)  — check values against each other and the world size.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "models/model_config.h"

namespace autosp::trainer {

// Section "data". Paths are relative to the current working directory.
struct DataOptions {
  std::string train = "build/data/corpus_train.u16";  // training tokens
  std::string val = "build/data/corpus_val.u16";      // eval tokens; "" = no eval
  std::string format = "u16";  // "u16" | "u32" (raw little-endian) | "llmc" (llm.c .bin)
  bool documents = true;       // segment ids / positions restart after each eod_token
  int64_t eod_token = 256;     // end-of-document token (byte-level vocab: 256)
};

// Section "train".
struct TrainOptions {
  int64_t seq_len = 256;        // tokens per row (≤ model.max_seq_len)
  int64_t batch_size = 4;       // rows per micro-batch (per data-parallel replica)
  int64_t grad_accum_steps = 1;  // micro-batches per optimizer step (gradients summed in place)
  int64_t steps = 200;          // optimizer steps in total
  double lr = 3e-3;             // peak learning rate, reached after warmup_steps
  double min_lr = 3e-4;         // decay floor, reached at `steps`
  int64_t warmup_steps = 20;    // linear warmup length
  // After warmup (trainer/schedule.h): "cosine" to min_lr, "linear" to min_lr, "constant" at
  // lr, or "wsd" (warmup-stable-decay): lr until the last decay_steps, then linear to min_lr.
  std::string lr_schedule = "cosine";
  int64_t decay_steps = 0;      // "wsd": length of the final decay; 0 = a fifth of the steps after warmup
  double weight_decay = 0.1;    // AdamW decoupled decay (not applied to norms/biases)
  double beta1 = 0.9;           // AdamW first-moment decay, in [0, 1)
  double beta2 = 0.95;          // AdamW second-moment decay, in [0, 1)
  double grad_clip = 1.0;       // global-norm clip; 0 = off
  int64_t seed = 1234;          // parameter init and data order
  int64_t eval_every = 50;      // steps between evals on data.val; 0 = off
  int64_t eval_steps = 4;       // batches per eval
  std::string device = "cpu";   // "cpu" | "cuda" (one GPU per rank; a build with nvcc)
  // The cost model's preset for sp_strategy "auto" and --plan: "auto" (cpu, or on train.device
  // cuda the GPU's: h200 for an H200, else h100), "cpu", "h100", "h200", "h100x8-nvlink".
  std::string hardware = "auto";
  std::string dtype = "f32";    // "f32" | "bf16" (activations; parameters and optimizer state stay f32; the CPU emulates bf16 through f32 kernels)
  // Activation recompute: "none", "selective" (recompute norms, rope, activations; keep
  // matmul outputs and attention), "layer" (keep each layer's input, attention and collective
  // results; recompute the rest of the layer in backward), "full" (also re-run the layer's
  // collectives), or "auto": the least recompute that fits train.memory_gib.
  std::string recompute = "auto";
  double memory_gib = 0;        // per-rank memory budget for "auto" and --plan --max-seq; 0 = no limit
  // Activations kept for the backward parked in host memory (sp_compiler/offload_activations.h):
  // "none", "on", or "auto": with train.host_memory_gib set, only when no recompute policy
  // fits train.memory_gib on the device, and then within the host budget.
  std::string offload = "auto";
  double host_memory_gib = 0;   // per-rank host memory for offloaded activations; 0 = none for "auto", no limit for "on"
  int64_t mlp_chunks = 0;       // MLPs over this many sequence slices; 0 = auto (only when the budget needs it)
};

// Section "parallel".
struct ParallelOptions {
  int64_t sp = 1;                    // sequence-parallel degree; divides the world size
  std::string sp_strategy = "auto";  // "auto" | "ulysses" | "ring" | "hybrid"
  int64_t zero_stage = 0;            // 0-3: none, optimizer state, + gradients, + parameters
  double bucket_mb = 64;             // ZeRO: cap on one flat parameter bucket (MiB); buckets also break per layer
  bool overlap = true;               // overlap collectives with compute
};

// Section "checkpoint".
struct CheckpointOptions {
  std::string dir = "build/checkpoints/tiny";  // root of step_XXXXXXXX dirs
  int64_t every = 100;                         // steps between saves; 0 = off
  int64_t keep = 2;                            // newest checkpoints kept (≥ 1)
  // Starting weights (runtime/pretrained.h): a safetensors file or a Hugging Face model
  // directory, read by parameter name; "" = random initialisation. --resume overrides it.
  std::string init_from;
};

// Section "log".
struct LogOptions {
  int64_t every = 10;                                  // steps between progress lines (≥ 1)
  std::string metrics_file = "build/metrics/tiny.jsonl";  // JSON Lines; "" = off
};

struct Options {
  models::ModelConfig model;  // section "model"
  DataOptions data;
  TrainOptions train;
  ParallelOptions parallel;
  CheckpointOptions checkpoint;
  LogOptions log;
  // Not configuration (no key, not saved): the CPU cores each rank keeps busy, to which the
  // cpu cost-model preset is scaled (sp::cpu_share). Trainer::create sets it as every rank
  // agrees, --plan for the ranks it plans; 0 = the preset as measured.
  double cpu_cores_per_rank = 0;
};

// Reads `path` (JSON; // comments allowed), applies each "section.key=VALUE" of `sets` in
// order (VALUE parsed as JSON when it is valid JSON, else taken as a string: train.lr=3e-4,
// data.train=x.u16, data.documents=false), then converts. Errors: the file cannot be read
// or parsed, unknown section/key, wrong type — each names the file (or the --set) and key.
// Values are not range-checked here; call validate().
StatusOr<Options> load_options(const std::string& path, const std::vector<std::string>& sets);

// JSON → Options. Missing keys take defaults; unknown keys and wrong types are errors that
// name `source_name` (e.g. the file path) and the key.
StatusOr<Options> options_from_json(const nlohmann::json& j, const std::string& source_name);

// Every key of every section, defaults included: what was actually run.
nlohmann::json to_json(const Options& o);

// Impossible values and combinations (n_heads vs n_kv_heads, seq_len vs max_seq_len, sp vs
// world_size, unknown arch/format/strategy/dtype, ranges). Messages name the key and
// `source_name`.
Status validate(const Options& o, int world_size, const std::string& source_name = "config");

// FNV-1a 64 of to_json(o).dump(): equal on every rank iff the options are equal.
uint64_t options_hash(const Options& o);

}  // namespace autosp::trainer
