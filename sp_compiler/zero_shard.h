// zero_shard: ZeRO as a graph rewrite, after autodiff. Parameters are grouped into flat
// buckets (ir/buckets.h: one per layer, split past a size cap, padded to a multiple of the
// world size) and:
//   stage 0: parameters and gradients stay whole on every rank, but a bucket's gradients are
//            still packed and all-reduced as one buffer, then unpacked into the per-parameter
//            outputs "grad.<p>": one collective per bucket instead of one per tensor (a
//            Llama layer has 9 tensors; each collective's latency is paid once);
//   stage 1: each bucket's gradients are packed and all-reduced as one buffer, output
//            "grad_bucket.<b>"; the runtime keeps AdamW moments only for its shard and
//            all-gathers updated parameters. A bf16 bucket (below) is kept whole in bf16: its
//            parameter arguments become bf16 and the casts that read them are dropped, their
//            readers reading the argument (the runtime's gather casts as it sends);
//   stage 2: the packed gradients are reduce-scattered, output "grad_shard.<b>" (this rank's
//            shard only); bf16 buckets as at stage 1;
//   stage 3: as 2, and parameters live only as shards: the argument "param_shard.<b>" is
//            all-gathered and unpacked right before the bucket's first use in forward, and
//            again before its first use in backward, so the full parameters are alive only
//            around their uses. A bucket whose parameters are only read through casts to bf16
//            (a bf16 program's matrices; plan_buckets gives them buckets of their own) is
//            gathered in bf16: the shard is cast, gathered and unpacked, and the casts that
//            read the parameters are dropped, their readers reading the gathered values.
// The per-parameter all_reduce that autodiff put on each gradient is replaced.
#pragma once
#include <memory>

#include "ir/buckets.h"
#include "sp_compiler/pass.h"

namespace autosp::sp {

using ir::kGradBucketPrefix;
using ir::kGradShardPrefix;
using ir::kParamShardPrefix;

struct ZeroOptions {
  int stage = 0;
  int world = 1;
  int64_t bucket_bytes = 64ll << 20;  // cap on a bucket's parameter bytes
};

// Buckets for the parameter arguments of `g`, in argument order: a new bucket starts at each
// layer boundary ("...layers.<i>." / "...h.<i>.") or when the cap would be exceeded. At stages
// 1-3 a layer's parameters read only as bf16 come first, in buckets apart from its f32-read ones.
// The plan depends only on the parameters and their forward readers, so the forward graph
// and the differentiated one give the same plan (the runtime binds shards by the former's).
ir::BucketPlan plan_buckets(const ir::Graph& g, const ZeroOptions& opt);

std::unique_ptr<Pass> make_zero_shard_pass(const ZeroOptions& opt);

}  // namespace autosp::sp
