// Parameter buckets for ZeRO: parameters packed, in graph order, into flat fp32 buffers (one
// per layer, split further past a size cap) padded to a multiple of the world size, so each
// rank owns one equal contiguous shard of every bucket. Plain data shared by the compiler
// (sp_compiler/zero_shard.cc makes the plan and rewrites the graph) and the runtime (which
// allocates shards, runs the optimizer on them, and writes them to checkpoints).
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/shape.h"
#include "ir/graph.h"

namespace autosp::ir {

// Names of the program's ZeRO arguments and outputs, per bucket.
inline constexpr const char* kGradBucketPrefix = "grad_bucket.";  // stage 1: the all-reduced bucket
inline constexpr const char* kGradShardPrefix = "grad_shard.";    // stages 2-3: this rank's shard
inline constexpr const char* kParamShardPrefix = "param_shard.";  // stage 3: this rank's parameters
// Gradient accumulation (sp_compiler/accumulate_gradients.h): the input each gradient output
// adds onto, bound to the output's own tensor.
inline constexpr const char* kAccumulatedPrefix = "accumulated.";

struct BucketEntry {
  std::string name;    // parameter name
  Shape shape;
  Init init;
  int64_t offset = 0;  // element offset in the bucket's flat buffer
};

struct Bucket {
  std::string name;  // "bucket.3"
  std::vector<BucketEntry> params;
  int64_t numel = 0;   // Σ parameter elements
  int64_t padded = 0;  // numel rounded up to a multiple of the world size
  // The type the program reads the whole bucket in, and so what every all_gather of it
  // moves: bf16 when every parameter in the bucket is only ever read through a cast to bf16
  // (a bf16 program's matrices), so the shard is cast as it is gathered and half the bytes
  // move; else f32. At stage 3 that is the gather where the program uses the bucket; at
  // stages 1-2 the gather after each update, into the whole copy a rank keeps, which is then
  // bf16 beside an f32 master shard (as DeepSpeed's ZeRO-1/2 and Megatron's distributed
  // optimizer keep them). Shards, gradients and optimizer state stay f32.
  DType gather = DType::f32;
};

struct BucketPlan {
  int world = 1;
  int stage = 0;
  std::vector<Bucket> buckets;
  int64_t shard_numel(const Bucket& b) const { return b.padded / world; }
  // Whether this rank keeps the whole bucket (stages 1-2) in the gathered type with a separate
  // f32 master shard, instead of one f32 buffer whose slice is the shard.
  bool separate_master(const Bucket& b) const { return stage < 3 && b.gather != DType::f32; }
  // Bytes one rank keeps for a bucket, what runtime/zero_params.cc allocates (and --plan
  // counts, with send_bytes): the whole bucket below stage 3 (plus the f32 master shard when
  // the whole copy is bf16), else the shard; gradients whole at stage 1, else the shard; two
  // f32 moments.
  int64_t param_bytes(const Bucket& b) const {
    if (stage == 3) return 4 * shard_numel(b);
    return int64_t(dtype_size(b.gather)) * b.padded + (separate_master(b) ? 4 * shard_numel(b) : 0);
  }
  int64_t grad_bytes(const Bucket& b) const { return 4 * (stage == 1 ? b.padded : shard_numel(b)); }
  int64_t optimizer_bytes(const Bucket& b) const { return 8 * shard_numel(b); }
  // The one send buffer of the gathers after an update (stages 1-2): the largest shard in its
  // gathered type (runtime/zero_params.cc reuses it for every bucket).
  int64_t send_bytes() const {
    int64_t most = 0;
    if (stage < 3)
      for (const Bucket& b : buckets) most = std::max(most, int64_t(dtype_size(b.gather)) * shard_numel(b));
    return most;
  }
  // Bytes of the whole bucket that the gather after an update fills (stages 1-2; 0 at stage 3).
  int64_t update_gather_bytes(const Bucket& b) const {
    return stage < 3 ? int64_t(dtype_size(b.gather)) * b.padded : 0;
  }
};

}  // namespace autosp::ir
