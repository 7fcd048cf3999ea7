#include "trainer/compile.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <optional>

#include "core/log.h"
#include "ir/program_printer.h"
#include "models/model.h"
#include "sp_compiler/accumulate_gradients.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/chunk_mlp.h"
#include "sp_compiler/fuse_accumulate.h"
#include "sp_compiler/lower.h"
#include "sp_compiler/offload_activations.h"
#include "sp_compiler/shard_sequence.h"
#include "sp_compiler/zero_shard.h"
#include "trainer/plan_report.h"

namespace autosp::trainer {

bool fits_budgets(const Options& opts, const Compiled& c) {
  const int64_t budget = int64_t(opts.train.memory_gib * double(1ll << 30));
  const int64_t host_budget = int64_t(opts.train.host_memory_gib * double(1ll << 30));
  return (budget == 0 || memory_plan(c).total() <= budget) && (host_budget == 0 || c.train.host_bytes <= host_budget);
}

namespace {

// The training program for one recompute policy and MLP chunking, with c's accumulation and
// offload settings (the eval program depends on none of them).
StatusOr<ir::Program> train_program(const Compiled& c, const sp::ZeroOptions& zero, sp::RecomputePolicy policy,
                                    int mlp_chunks, bool overlap, const std::string& dump_ir_dir) {
  ir::Graph g = c.forward;
  sp::Pipeline pipeline;
  pipeline.add(sp::make_shard_sequence_pass(c.mesh))
      .add(sp::make_chunk_mlp_pass(mlp_chunks))
      .add(sp::make_autodiff_pass(c.mesh.world()))
      // Recompute sees parameters by name (their layers); ZeRO-3 then gathers a bucket again
      // for the backward phase, recomputed forward nodes included.
      .add(sp::make_recompute_pass(policy))
      .add(sp::make_zero_shard_pass(zero));
  if (c.accumulate_gradients) pipeline.add(sp::make_accumulate_gradients_pass());
  if (c.offload) pipeline.add(sp::make_offload_activations_pass());
  // Last: the adds it folds include recompute's copies and every gradient sum.
  pipeline.add(sp::make_fuse_accumulate_pass());
  RETURN_IF_ERROR(pipeline.run(g, {dump_ir_dir}));
  ASSIGN_OR_RETURN(ir::Program p, sp::lower(g, {overlap}));
  if (!dump_ir_dir.empty()) {  // after the passes' NN-<pass>.ir files: the scheduled program
    char file[32];  // numbered after the last pass's file
    std::snprintf(file, sizeof file, "/%02zu-lowered.program", pipeline.size() + 1);
    const std::string path = dump_ir_dir + file;
    std::ofstream f(path);
    f << ir::print_program(p);
    if (!f) return IoError("--dump-ir: cannot write " + path);
  }
  return p;
}

sp::ZeroOptions zero_options(const Options& opts, int world_size) {
  // ZeRO over one rank would shard nothing: that is stage 0.
  return {world_size > 1 ? int(opts.parallel.zero_stage) : 0, world_size,
          int64_t(opts.parallel.bucket_mb * 1024 * 1024)};
}

// One compilation of the config as it stands: sp_strategy "auto" here is the per-op choice.
StatusOr<Compiled> compile_once(const Options& opts, int world_size, const std::string& hardware) {
  Compiled c;
  ASSIGN_OR_RETURN(c.hardware, sp::hardware(hardware));
  if (c.hardware.name == "cpu" && opts.cpu_cores_per_rank > 0)
    c.hardware = sp::cpu_share(c.hardware, opts.cpu_cores_per_rank);
  c.device = opts.train.device;
  c.accumulate_gradients = opts.train.grad_accum_steps > 1;
  const int sp_degree = int(opts.parallel.sp);
  if (sp_degree < 1 || world_size % sp_degree != 0)
    return InvalidArgument("parallel.sp = " + std::to_string(sp_degree) + " does not divide the world size " +
                           std::to_string(world_size));
  c.mesh = {world_size / sp_degree,  sp_degree, opts.parallel.sp_strategy, c.hardware.intra_bw, c.hardware.inter_bw,
            c.hardware.ranks_per_node};
  const models::StepShape shape{opts.train.batch_size, opts.train.seq_len, opts.data.documents,
                                opts.train.dtype == "bf16" ? DType::bf16 : DType::f32};
  ASSIGN_OR_RETURN(c.forward, models::build(opts.model, shape));
  if (world_size > 1) {
    ASSIGN_OR_RETURN(c.plan, sp::plan_sequence_parallel(c.forward, c.mesh));
  } else {
    c.plan.layout = {opts.train.seq_len, opts.train.seq_len, 1, 1, false};
  }

  const sp::ZeroOptions zero = zero_options(opts, world_size);
  c.buckets = sp::plan_buckets(c.forward, zero);

  ir::Graph eval_graph = c.forward;
  sp::Pipeline eval_pipeline;
  eval_pipeline.add(sp::make_shard_sequence_pass(c.mesh))
      .add(sp::make_zero_shard_pass(zero))
      .add(sp::make_fuse_accumulate_pass());
  // (The eval program keeps the MLP whole: without a backward its intermediates die at once.)
  RETURN_IF_ERROR(eval_pipeline.run(eval_graph, {}));
  ASSIGN_OR_RETURN(c.eval, sp::lower(eval_graph, {opts.parallel.overlap}));

  // Recompute (and MLP chunking): as configured, or under "auto" the first of these, in order
  // of increasing recomputation, whose planned memory fits train.memory_gib. Offloading
  // activations to host memory comes after every device-only candidate under train.offload
  // "auto" when a host budget is set (the host link is slower than recomputing while the
  // device has room), and on every candidate under "on".
  const int64_t budget = int64_t(opts.train.memory_gib * double(1ll << 30));
  const int64_t host_budget = int64_t(opts.train.host_memory_gib * double(1ll << 30));
  const int chunks = int(opts.train.mlp_chunks);  // 0: auto
  using P = sp::RecomputePolicy;
  struct Candidate {
    P policy;
    int chunks;
    bool offload;
  };
  std::vector<Candidate> ladder;
  if (opts.train.recompute != "auto") {
    ASSIGN_OR_RETURN(P p, sp::parse_recompute(opts.train.recompute));
    ladder.push_back({p, std::max(chunks, 1), false});
    if (chunks == 0)
      for (int n : {4, 16}) ladder.push_back({p, n, false});
  } else {
    // In order of extra work: chunking the MLP costs only smaller GEMMs, re-running attention
    // (full) costs a quadratic forward, so layer with chunks comes before full. (full is not
    // always smaller than layer: it re-materialises a whole layer, attention included, during
    // that layer's backward, which on a shallow model outweighs the O tensors it drops.)
    for (P p : {P::none, P::selective, P::layer}) ladder.push_back({p, std::max(chunks, 1), false});
    if (chunks == 0)
      for (int n : {4, 16}) ladder.push_back({P::layer, n, false});
    ladder.push_back({P::full, std::max(chunks, 1), false});
    if (chunks == 0)
      for (int n : {4, 16}) ladder.push_back({P::full, n, false});
  }
  // The ladder on the device alone, then (offload "on", or "auto" with both budgets) with
  // activations offloaded.
  std::vector<Candidate> candidates;
  if (opts.train.offload != "on") candidates = ladder;
  if (opts.train.offload == "on" || (opts.train.offload == "auto" && budget > 0 && host_budget > 0))
    for (Candidate k : ladder) candidates.push_back({k.policy, k.chunks, true});
  for (size_t k = 0; k < candidates.size(); ++k) {
    const auto [p, n, offload] = candidates[k];
    c.offload = offload;
    ASSIGN_OR_RETURN(c.train, train_program(c, zero, p, n, opts.parallel.overlap, ""));
    c.recompute = p;
    c.mlp_chunks = n;
    const int64_t total = memory_plan(c).total(), host = c.train.host_bytes;
    const std::string what =
        std::string(sp::recompute_name(p)) +
        (n > 1 ? " with the MLP in " + std::to_string(n) + " sequence chunks" : "") +
        (offload ? (n > 1 ? " and " : " with ") + std::string("activations offloaded (") + std::to_string(host >> 20) +
                       " MiB of host memory)"
                 : "");
    if (budget == 0) {
      c.recompute_reason = (opts.train.recompute == "auto" ? "auto: no memory budget (train.memory_gib = 0)"
                                                           : "train.recompute = " + opts.train.recompute) +
                           std::string(offload ? "; activations offloaded (train.offload = on)" : "");
      break;
    }
    const bool host_fits = host_budget == 0 || host <= host_budget;
    if (fits_budgets(opts, c)) {
      c.recompute_reason = (opts.train.recompute == "auto" ? "auto: " : "train.recompute = " + opts.train.recompute + ": ") +
                           what + " fits train.memory_gib (" + std::to_string(total >> 20) + " MiB planned of " +
                           std::to_string(budget >> 20) + ")";
      break;
    }
    c.recompute_reason = "even " + what + " needs " + std::to_string(total >> 20) + " MiB" +
                         (host_fits ? "" : " and " + std::to_string(host >> 20) + " MiB of host memory") +
                         ", over train.memory_gib = " + std::to_string(budget >> 20) + " MiB" +
                         (host_fits ? "" : " / train.host_memory_gib = " + std::to_string(host_budget >> 20) + " MiB");
  }
  return c;
}

// sp_strategy "auto" picks each attention op's strategy by its own communication time, but a
// strategy also decides what the step must recompute to fit (ring holds K/V blocks and no
// all-to-all buffers) and so its compute. Each strategy forced on every op is compiled too,
// with the same recompute search, and the step predicted fastest that fits the budget wins;
// plans within 1% of the fastest are a tie (the model is not that precise), which goes to the
// plan that needs less memory: the headroom is worth more than a predicted 1% (pick_plan).
}  // namespace

StatusOr<ForcedCompile> compile_forced(const Options& opts, int world_size, const std::string& hardware,
                                       const std::string& strategy) {
  Options forced = opts;
  forced.parallel.sp_strategy = strategy;
  ASSIGN_OR_RETURN(Compiled fc, compile_once(forced, world_size, hardware));
  Compiled::Forced f{strategy, fc.plan.attention.empty() ? strategy : sp::strategy_name(fc.plan.attention[0].strategy),
                     sp::predict_step(fc.train, fc.hardware, world_size, opts.parallel.overlap)};
  return ForcedCompile{std::move(fc), std::move(f)};
}

size_t pick_plan(const std::vector<PlanCost>& plans) {
  size_t fastest = 0;
  for (size_t k = 1; k < plans.size(); ++k)
    if (plans[k].step_s < plans[fastest].step_s) fastest = k;
  size_t pick = fastest;
  for (size_t k = 0; k < plans.size(); ++k) {
    if (plans[k].step_s > 1.01 * plans[fastest].step_s) continue;
    if (plans[k].bytes < plans[pick].bytes || (plans[k].bytes == plans[pick].bytes && plans[k].step_s < plans[pick].step_s))
      pick = k;
  }
  return pick;
}

namespace {

Status choose_whole_step(const Options& opts, int world_size, const std::string& hardware, Compiled& c) {
  // The candidates that fit: the per-op choice (index 0, c itself) and each forced strategy.
  struct Candidate {
    std::string name;
    double step_s;
    int64_t bytes;
    std::optional<Compiled> compiled;  // forced ones; the per-op choice is c
  };
  std::vector<Candidate> fit;
  const double per_op = sp::predict_step(c.train, c.hardware, world_size, opts.parallel.overlap).step_s();
  const int64_t per_op_bytes = memory_plan(c).total();
  const bool per_op_fits = fits_budgets(opts, c);
  if (per_op_fits) fit.push_back({"", per_op, per_op_bytes, std::nullopt});
  std::vector<Compiled::Forced> costs;
  for (const char* strategy : kForcedStrategies) {
    ASSIGN_OR_RETURN(ForcedCompile f, compile_forced(opts, world_size, hardware, strategy));
    costs.push_back(std::move(f.forced));
    if (!fits_budgets(opts, f.compiled)) {
      AUTOSP_LOG(1) << "sp_strategy auto: " << strategy
                    << " on every op does not fit train.memory_gib (or train.host_memory_gib)";
      continue;
    }
    const double t = costs.back().cost.step_s();
    AUTOSP_LOG(1) << "sp_strategy auto: whole step " << t << " s with " << strategy << " on every op, " << per_op
                  << " s with the per-op choice";
    fit.push_back({strategy, t, memory_plan(f.compiled).total(), std::move(f.compiled)});
  }
  std::vector<PlanCost> plans;
  for (const Candidate& k : fit) plans.push_back({k.step_s, k.bytes});
  const size_t pick = pick_plan(plans);
  if (fit.empty() || fit[pick].name.empty()) {  // the per-op choice stands (or nothing fits)
    c.forced = std::move(costs);
    return Status::Ok();
  }
  Candidate& won = fit[pick];
  // A tie: something else predicts a faster step, but within 1%.
  const bool tie = std::any_of(fit.begin(), fit.end(), [&](const Candidate& k) { return k.step_s < won.step_s; });
  c = std::move(*won.compiled);
  c.forced = std::move(costs);  // after `c = ...`, which has none
  char why[384];
  const double gib = double(1ll << 30);
  if (per_op_fits)
    std::snprintf(why, sizeof why,
                  "auto: the whole step predicts %.4g s and %.1f GiB per rank with %s on every op, %.4g s and %.1f GiB "
                  "with each op's least-communication choice%s",
                  won.step_s, double(won.bytes) / gib, won.name.c_str(), per_op, double(per_op_bytes) / gib,
                  tie ? " (within 1% of the fastest, a tie: the smaller plan wins)" : "");
  else
    std::snprintf(why, sizeof why,
                  "auto: the whole step predicts %.4g s with %s on every op%s; each op's least-communication choice "
                  "does not fit the memory budget",
                  won.step_s, won.name.c_str(), tie ? " (within 1% of the fastest, with less memory)" : "");
  for (sp::AttentionDecision& d : c.plan.attention) d.reason = why;
  return Status::Ok();
}

}  // namespace

StatusOr<bool> some_plan_fits(const Options& opts, int world_size, const std::string& hardware) {
  ASSIGN_OR_RETURN(Compiled c, compile_once(opts, world_size, hardware));
  if (fits_budgets(opts, c)) return true;
  if (opts.parallel.sp_strategy != "auto" || c.mesh.sp <= 1) return false;
  for (const char* strategy : kForcedStrategies) {
    ASSIGN_OR_RETURN(ForcedCompile f, compile_forced(opts, world_size, hardware, strategy));
    if (fits_budgets(opts, f.compiled)) return true;
  }
  return false;
}

std::string hardware_preset(const Options& opts, const std::string& device_name) {
  if (opts.train.hardware != "auto") return opts.train.hardware;
  if (opts.train.device != "cuda") return "cpu";
  return device_name.find("H200") != std::string::npos ? "h200" : "h100";
}

StatusOr<Compiled> compile(const Options& opts, int world_size, const std::string& dump_ir_dir,
                           const std::string& hardware) {
  ASSIGN_OR_RETURN(Compiled c, compile_once(opts, world_size, hardware));
  if (opts.parallel.sp_strategy == "auto" && c.mesh.sp > 1)
    RETURN_IF_ERROR(choose_whole_step(opts, world_size, hardware, c));
  if (!dump_ir_dir.empty())  // dump the chosen pipeline
    RETURN_IF_ERROR(train_program(c, zero_options(opts, world_size), c.recompute, c.mlp_chunks, opts.parallel.overlap,
                                  dump_ir_dir)
                        .status());
  return c;
}

}  // namespace autosp::trainer
