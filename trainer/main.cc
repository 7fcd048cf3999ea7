// autosp-train: the command line around trainer::Trainer.
// Exit codes: 0 done, 1 a run-time failure (I/O, non-finite loss), 2 bad input (flags,
// config, data) detected before any training work.
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/log.h"
#include "kernels/cpu/threads.h"
#include "runtime/collective_exec.h"
#include "runtime/comm.h"
#include "runtime/zero_checkpoint.h"
#include "trainer/plan_report.h"
#include "trainer/progress.h"
#include "trainer/trace.h"
#include "trainer/trainer.h"

using namespace autosp;
using namespace autosp::trainer;

namespace {

struct Flags {
  std::string config;
  std::vector<std::string> sets;
  std::string resume, dump_ir, export_file, trace, hardware, plan_json;
  bool eval_only = false, plan = false, profile = false, max_seq = false;
  double memory_gib = -1;
  int plan_world = 0;  // --world: the ranks --plan plans for outside mpirun
  bool plan_world_set = false;
  int verbose = 0;
};

int64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

// The resident size now (0 where /proc is missing).
int64_t rss_bytes() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return int64_t(resident) * int64_t(sysconf(_SC_PAGESIZE));
}

// The process's size before the run allocates anything: mostly its shared libraries (the
// CUDA libraries a CUDA-enabled build links add ~200 MiB of relocated pages even on the CPU).
// The progress line's memory is the peak above it.
const int64_t g_rss_at_start = rss_bytes();

std::string default_config() {
  const std::string rel = "configs/tiny-cpu.json";
  if (std::filesystem::exists(rel)) return rel;
  return std::string(AUTOSP_SOURCE_DIR) + "/" + rel;
}

// The run's communicator, once it exists (so a failing rank can stop the others).
runtime::Communicator* g_world = nullptr;

// Bad input (code 2) is found identically by every rank before any collective, so each
// returns. A failure while training (code 1) may hit one rank only: it aborts the world so
// the others do not wait for it forever.
int fail(int code, const Status& s) {
  if (g_world)
    std::fprintf(stderr, "autosp-train: rank %d: error: %s\n", g_world->rank(), s.message().c_str());
  else
    std::fprintf(stderr, "autosp-train: error: %s\n", s.message().c_str());
  if (g_world && code == 1) g_world->abort(s.message());
  return code;
}

// Per-step milliseconds by op kind, largest first, and the communication share. Ring attention
// is attention compute with its K/V exchange overlapped inside, so it is listed apart.
void print_profile(runtime::Executor& ex, int64_t steps) {
  std::vector<std::pair<double, ir::Op>> rows;
  double total = 0, comm = 0;
  for (int i = 0; i < ir::kNumOps; ++i) {
    const double s = ex.op_seconds()[i];
    if (s <= 0) continue;
    rows.push_back({s, ir::Op(i)});
    total += s;
    if (runtime::is_communication(ir::Op(i)) && ir::Op(i) != ir::Op::ring_attention &&
        ir::Op(i) != ir::Op::ring_attention_backward)
      comm += s;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::printf("profile (rank 0, ms per step):\n");
  for (const auto& [s, op] : rows)
    std::printf("  %-26s %10.2f  %5.1f%%\n", std::string(ir::op_name(op)).c_str(), 1000.0 * s / double(steps),
                100.0 * s / total);
  std::printf("  %-26s %10.2f\n", "total", 1000.0 * total / double(steps));
  std::printf("communication: %.2f ms/step, %.1f%% of step time (collectives outside ring attention)\n",
              1000.0 * comm / double(steps), 100.0 * comm / total);
}

// Every rank must run the same config: compare hashes before any work.
Status agree_on_config(runtime::Communicator& world, const Options& opts) {
  const uint64_t mine = options_hash(opts);
  uint64_t root = mine;
  world.broadcast(&root, sizeof root, 0);
  float differ = root != mine ? 1.0f : 0.0f;
  world.all_reduce_sum(&differ, 1);
  if (differ > 0)
    return InvalidArgument(std::to_string(int(differ)) + " rank(s) read a different config than rank 0; every rank "
                           "must get the same --config file contents and --set flags");
  return Status::Ok();
}

// `s` on this rank, or an error when another rank failed (collective when world is set).
Status agree_on_success(runtime::Communicator* world, Status s) {
  if (!world) return s;
  float failed = s.ok() ? 0.0f : 1.0f;
  world->all_reduce_sum(&failed, 1);
  if (s.ok() && failed > 0)
    return FailedPrecondition(std::to_string(int(failed)) + " other rank(s) failed; see their messages");
  return s;
}

int run(const Flags& f) {
  if (!f.export_file.empty()) {
    if (f.resume.empty()) return fail(2, InvalidArgument("--export needs --resume CHECKPOINT"));
    if (Status s = runtime::export_consolidated(f.resume, f.export_file); !s.ok()) return fail(2, s);
    std::printf("wrote %s\n", f.export_file.c_str());
    return 0;
  }
  auto opts_or = load_options(f.config, f.sets);
  if (!opts_or.ok()) return fail(2, opts_or.status());
  Options opts = opts_or.value();
  if (f.memory_gib >= 0) opts.train.memory_gib = f.memory_gib;
  if (!f.hardware.empty()) opts.train.hardware = f.hardware;
  if (f.max_seq && (!f.plan || opts.train.memory_gib <= 0))
    return fail(2, InvalidArgument("--max-seq goes with --plan and a budget (--memory-gib G or train.memory_gib)"));
  std::unique_ptr<runtime::Communicator> world;
  if (runtime::launched_by_mpi()) {
    world = runtime::mpi_world();
    g_world = world.get();
    set_log_rank(world->rank());
  }
  const int world_size = world ? world->size() : 1, rank = world ? world->rank() : 0;
  if (world && !std::getenv("OMP_NUM_THREADS")) {
    // Ranks on one machine share its cores. OpenMP's default, every core for every rank, makes
    // 4 ranks on 2 cores spin against each other (tiny config: 1.2 s a step instead of 21 ms).
    const int ranks_here = kernels::cpu::ranks_on_this_machine(world_size);
    const int threads = kernels::cpu::default_cpu_threads(ranks_here);
    kernels::cpu::set_cpu_threads(threads);
    AUTOSP_LOG(1) << ranks_here << " ranks share " << kernels::cpu::available_cores() << " cores here: " << threads
                  << " CPU kernel thread(s) each (OMP_NUM_THREADS overrides)";
  }
  // --plan outside mpirun plans for --world ranks, by default the mesh the config asks for
  // (dp 1 x parallel.sp); under mpirun, for the ranks it has.
  if (!f.plan_json.empty() && !f.plan) return fail(2, InvalidArgument("--plan-json goes with --plan"));
  if (f.plan_world_set && (!f.plan || world))
    return fail(2, InvalidArgument("--world goes with --plan outside mpirun (under mpirun the plan is for its ranks)"));
  if (f.plan_world_set && f.plan_world < 1)
    return fail(2, InvalidArgument("--world " + std::to_string(f.plan_world) + ": expected ≥ 1"));
  const int plan_world =
      f.plan && !world ? (f.plan_world_set ? f.plan_world : int(std::max<int64_t>(1, opts.parallel.sp))) : world_size;
  // Agree first: validation then fails on every rank or on none, so all return together.
  if (world)
    if (Status s = agree_on_config(*world, opts); !s.ok()) return fail(2, s);
  if (Status s = validate(opts, plan_world, "config " + f.config); !s.ok()) return fail(2, s);
  if (f.plan) {
    // The cpu preset per planned rank: outside mpirun the ranks would start here, sharing its
    // cores as mpirun's ranks do (above); under mpirun, the threads this rank was given.
    const int here = world ? kernels::cpu::ranks_on_this_machine(world_size) : plan_world;
    const int threads = world || std::getenv("OMP_NUM_THREADS") ? kernels::cpu::cpu_threads()
                                                                : kernels::cpu::default_cpu_threads(here);
    opts.cpu_cores_per_rank = kernels::cpu::cpu_cores_per_rank(threads, here);
  }

  int64_t longest = -1;  // --max-seq's answer, for --plan-json
  if (f.plan && f.max_seq) {
    const int64_t budget = int64_t(opts.train.memory_gib * double(1ll << 30));
    auto len = longest_seq_len(opts, plan_world, budget, hardware_preset(opts, ""));
    if (!len.ok()) return fail(2, len.status());
    if (rank == 0)
      std::printf("longest train.seq_len within %.3g GiB per rank: %lld tokens (recompute %s)\n", opts.train.memory_gib,
                  (long long)len.value(), opts.train.recompute.c_str());
    longest = len.value();
    if (len.value() > 0) {  // then plan that length
      opts.train.seq_len = len.value();
      opts.model.max_seq_len = std::max(opts.model.max_seq_len, len.value());
    }
  }
  if (f.plan) {
    auto c = compile(opts, plan_world, f.dump_ir, hardware_preset(opts, ""));
    if (!c.ok()) return fail(2, c.status());
    auto prediction = predict(opts, c.value());
    if (!prediction.ok()) return fail(2, prediction.status());
    if (rank != 0) return 0;
    auto alternatives = format_alternatives(opts, c.value(), hardware_preset(opts, ""));
    if (!alternatives.ok()) return fail(2, alternatives.status());
    std::printf("%s%s%s", format_plan(opts, c.value()).c_str(),
                format_prediction(opts, c.value(), prediction.value()).c_str(), alternatives.value().c_str());
    if (!f.plan_json.empty()) {
      nlohmann::json j = plan_json(opts, c.value(), prediction.value());
      if (longest >= 0) j["longest_seq_len"] = {{"tokens", longest}, {"memory_gib", opts.train.memory_gib}};
      std::ofstream out(f.plan_json);
      out << j.dump(2) << "\n";
      if (!out) return fail(2, IoError("--plan-json " + f.plan_json + ": cannot write"));
    }
    return 0;
  }
  // Opening data and reading checkpoints can fail on one rank only (a file missing on one
  // host): every rank learns it and returns, instead of the others waiting in a collective.
  auto trainer_or = Trainer::create(opts, f.dump_ir, world.get());
  if (Status s = agree_on_success(world.get(), trainer_or.status()); !s.ok()) return fail(2, s);
  Trainer& t = *trainer_or.value();
  if (!f.resume.empty())
    if (Status s = agree_on_success(world.get(), t.resume(f.resume)); !s.ok()) return fail(2, s);

  if (f.eval_only) {
    auto ev = t.evaluate();
    if (!ev.ok()) return fail(2, ev.status());
    if (rank == 0) std::printf("{\"eval_loss\": %.6f, \"tokens\": %lld}\n", ev->loss, (long long)ev->tokens);
    return 0;
  }
  const int dp = world_size / int(opts.parallel.sp);

  std::optional<MetricsWriter> metrics;
  Status metrics_status;
  if (!opts.log.metrics_file.empty() && rank == 0) {
    auto m = MetricsWriter::open(opts.log.metrics_file, /*append=*/!f.resume.empty());
    if (m.ok())
      metrics = std::move(m.value());
    else
      metrics_status = m.status();
  }
  if (Status s = agree_on_success(world.get(), metrics_status); !s.ok()) return fail(2, s);
  const TrainOptions& to = opts.train;
  if (rank == 0) {
    std::printf("autosp-train: %s, %s parameters, %lld steps of %lld x %lld tokens, from step %lld", opts.model.arch.c_str(),
                human_count(double(t.memory_plan().num_params)).c_str(), (long long)to.steps,
                (long long)(to.batch_size * to.grad_accum_steps * dp), (long long)to.seq_len, (long long)t.step());
    if (to.grad_accum_steps > 1) std::printf(" (%lld micro-batches each)", (long long)to.grad_accum_steps);
    if (world_size > 1) {
      std::printf("; %d ranks = dp %d x sp %d", world_size, dp, int(opts.parallel.sp));
      for (const auto& d : t.sp_plan().attention) {
        std::printf(", attention %s", sp::strategy_name(d.strategy));
        break;  // every layer has the same shape, so the same strategy; --plan lists each
      }
    }
    std::printf("\n");
    const runtime::PersistentBytes pb = t.params().persistent_bytes();
    const std::string buffers = pb.buffers > 0 ? ", gather buffer " + human_bytes(double(pb.buffers)) : "";
    std::printf("persistent memory per rank (zero %lld): parameters %s, gradients %s, optimizer %s%s, total %s; "
                "activation arena %s\n",
                (long long)opts.parallel.zero_stage, human_bytes(double(pb.params)).c_str(),
                human_bytes(double(pb.grads)).c_str(), human_bytes(double(pb.optimizer)).c_str(), buffers.c_str(),
                human_bytes(double(pb.total())).c_str(), human_bytes(double(t.memory_plan().train_arena)).c_str());
    std::fflush(stdout);
  }

  using clock = std::chrono::steady_clock;
  auto window_start = clock::now();
  const auto run_start = window_start;
  const int64_t first_step = t.step();
  double loss_acc = 0, comm_acc = 0;
  int64_t window_steps = 0;
  while (t.step() < to.steps) {
    if (!f.trace.empty() && t.step() + 1 == to.steps) t.train_executor().set_tracing(true);
    auto r = t.train_step();
    if (!r.ok()) return fail(1, r.status());
    loss_acc += r->loss;
    comm_acc += r->exposed_comm_ms;
    ++window_steps;
    const int64_t step = r->step;
    if (step % opts.log.every == 0 || step == to.steps) {
      const double secs = std::chrono::duration<double>(clock::now() - window_start).count();
      const double all_secs = std::chrono::duration<double>(clock::now() - run_start).count();
      StepStats s;
      s.step = step;
      s.total_steps = to.steps;
      s.loss = loss_acc / double(window_steps);
      s.lr = r->lr;
      s.grad_norm = r->grad_norm;
      s.tokens_per_s = double(window_steps * to.batch_size * to.grad_accum_steps * dp * to.seq_len) / secs;
      s.step_ms = 1000.0 * secs / double(window_steps);
      s.mfu = t.mfu(s.tokens_per_s);
      s.comm_ms = world_size > 1 ? comm_acc / double(window_steps) : -1.0;
      s.mem_bytes = t.device_peak_bytes() > 0 ? t.device_peak_bytes() : peak_rss_bytes() - g_rss_at_start;
      s.eta_s = all_secs / double(step - first_step) * double(to.steps - step);
      std::optional<EvalResult> ev;
      if (t.has_val() && to.eval_every > 0 && (step % to.eval_every == 0 || step == to.steps)) {
        auto e = t.evaluate();
        if (!e.ok()) return fail(1, e.status());
        ev = e.value();
      }
      if (rank == 0) {
        std::printf("%s\n", format_progress_line(s).c_str());
        if (ev) std::printf("%s\n", format_eval_line(step, to.steps, ev->loss, ev->tokens).c_str());
        std::fflush(stdout);
      }
      std::optional<double> eval_loss;
      if (ev) eval_loss = ev->loss;
      if (metrics)
        if (Status st = metrics->write(s, eval_loss); !st.ok()) return fail(1, st);
      loss_acc = comm_acc = 0;
      window_steps = 0;
      window_start = clock::now();
    }
    if (opts.checkpoint.every > 0 && (step % opts.checkpoint.every == 0 || step == to.steps))
      if (Status st = t.save_checkpoint(); !st.ok()) return fail(1, st);
  }
  if (f.profile && rank == 0 && t.step() > first_step) print_profile(t.train_executor(), t.step() - first_step);
  if (!f.trace.empty() && t.step() > first_step) {
    if (Status st = write_trace(f.trace, world.get(), t.train_executor().trace()); !st.ok()) return fail(1, st);
    if (rank == 0) std::printf("wrote the trace of step %lld to %s\n", (long long)t.step(), f.trace.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"autosp-train: train a transformer with compiler-derived sequence parallelism"};
  Flags f;
  f.config = default_config();
  app.add_option("--config", f.config, "JSON config file (default: configs/tiny-cpu.json)");
  app.add_option("--set", f.sets, "Override one config key, e.g. --set train.lr=3e-4 (repeatable)");
  app.add_option("--resume", f.resume, "Continue from a checkpoint: a step directory or a checkpoint root (newest)");
  app.add_flag("--eval-only", f.eval_only,
               "Print {\"eval_loss\", \"tokens\"} over train.eval_steps batches of data.val and exit");
  app.add_option("--export", f.export_file,
                 "With --resume: write the checkpoint's parameters (any ZeRO stage or world size) as one "
                 "safetensors file with Hugging Face names, then exit");
  app.add_option("--dump-ir", f.dump_ir, "Write the graph before and after each compiler pass into this directory");
  app.add_flag("--plan", f.plan,
               "Print the plan (mesh, SP strategy per attention op, recompute policy, communication per step, "
               "memory per rank) and stop before training");
  app.add_flag("--max-seq", f.max_seq, "With --plan: search the longest train.seq_len that fits --memory-gib per rank");
  app.add_option("--plan-json", f.plan_json,
                 "With --plan: also write the plan (memory in bytes, communication, decisions, predictions) "
                 "as JSON to this file");
  app.add_option("--world", f.plan_world,
                 "With --plan outside mpirun: plan for this many ranks, data parallel over parallel.sp "
                 "(default: parallel.sp)");
  app.add_option("--memory-gib", f.memory_gib, "Per-rank memory budget in GiB (sets train.memory_gib)");
  app.add_option("--hardware", f.hardware,
                 "The cost model's machine, for --plan and sp_strategy auto (sets train.hardware): cpu, h100, h200, "
                 "h100x8-nvlink, or auto (default: cpu, or the GPU's on train.device cuda)");
  app.add_option("--trace", f.trace,
                 "Write the last training step as a Chrome trace (Perfetto / chrome://tracing): a track per "
                 "stream per rank, every instruction with its op and layer");
  app.add_flag("--profile", f.profile,
               "After training, print time per op kind per step on rank 0, and the share spent in communication");
  app.add_flag("-v,--verbose", f.verbose, "Log compiler decisions (repeat for more detail)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  f.plan_world_set = app.count("--world") > 0;
  set_log_verbosity(f.verbose);
  return run(f);
}
