// Parameter buckets for ZeRO: parameters packed, in graph order, into flat fp32 buffers (one
// per layer, split further past a size cap) padded to a multiple of the world size, so each
// rank owns one equal contiguous shard of every bucket. Plain data shared by the compiler
// (sp_compiler/zero_shard.cc makes the plan and rewrites the graph) and the runtime (which
// allocates shards, runs the optimizer on them, and writes them to checkpoints).
#pragma once
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
  // What stage 3 all-gathers: bf16 when every parameter in the bucket is only ever read
  // through a cast to bf16 (a bf16 program's matrices), so the shard is cast before the
  // gather and half the bytes move; else f32. Shards, gradients and optimizer state stay f32.
  DType gather = DType::f32;
};

struct BucketPlan {
  int world = 1;
  int stage = 0;
  std::vector<Bucket> buckets;
  int64_t shard_numel(const Bucket& b) const { return b.padded / world; }
};

}  // namespace autosp::ir
