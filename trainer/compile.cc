#include "trainer/compile.h"

#include "models/model.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/lower.h"
#include "sp_compiler/shard_sequence.h"
#include "sp_compiler/zero_shard.h"

namespace autosp::trainer {

StatusOr<Compiled> compile(const Options& opts, int world_size, const std::string& dump_ir_dir) {
  Compiled c;
  const int sp_degree = int(opts.parallel.sp);
  if (sp_degree < 1 || world_size % sp_degree != 0)
    return InvalidArgument("parallel.sp = " + std::to_string(sp_degree) + " does not divide the world size " +
                           std::to_string(world_size));
  c.mesh = {world_size / sp_degree, sp_degree, opts.parallel.sp_strategy};
  const models::StepShape shape{opts.train.batch_size, opts.train.seq_len, opts.data.documents};
  ASSIGN_OR_RETURN(c.forward, models::build(opts.model, shape));
  if (world_size > 1) {
    ASSIGN_OR_RETURN(c.plan, sp::plan_sequence_parallel(c.forward, c.mesh));
  } else {
    c.plan.layout = {opts.train.seq_len, opts.train.seq_len, 1, 1, false};
  }

  // ZeRO over one rank would shard nothing: that is stage 0.
  const sp::ZeroOptions zero{world_size > 1 ? int(opts.parallel.zero_stage) : 0, world_size,
                             int64_t(opts.parallel.bucket_mb * 1024 * 1024)};
  c.buckets = sp::plan_buckets(c.forward, zero);

  ir::Graph train_graph = c.forward;
  sp::Pipeline train_pipeline;
  train_pipeline.add(sp::make_shard_sequence_pass(c.mesh))
      .add(sp::make_autodiff_pass(world_size))
      .add(sp::make_zero_shard_pass(zero));
  RETURN_IF_ERROR(train_pipeline.run(train_graph, {dump_ir_dir}));
  ir::Graph eval_graph = c.forward;
  sp::Pipeline eval_pipeline;
  eval_pipeline.add(sp::make_shard_sequence_pass(c.mesh)).add(sp::make_zero_shard_pass(zero));
  RETURN_IF_ERROR(eval_pipeline.run(eval_graph, {}));
  const sp::ScheduleOptions schedule{opts.parallel.overlap};
  ASSIGN_OR_RETURN(c.train, sp::lower(train_graph, schedule));
  ASSIGN_OR_RETURN(c.eval, sp::lower(eval_graph, schedule));
  return c;
}

}  // namespace autosp::trainer
