// autosp-train: the command line around trainer::Trainer.
// Exit codes: 0 done, 1 a run-time failure (I/O, non-finite loss), 2 bad input (flags,
// config, data) detected before any training work.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "core/log.h"
#include "trainer/progress.h"
#include "trainer/trainer.h"

using namespace autosp;
using namespace autosp::trainer;

namespace {

struct Flags {
  std::string config;
  std::vector<std::string> sets;
  std::string resume, dump_ir;
  bool eval_only = false, plan = false;
  int verbose = 0;
};

int64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

// Ranks launched by mpirun; multi-rank execution arrives with the sequence-parallel runtime.
int world_size_from_env() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return 1;
}

std::string default_config() {
  const std::string rel = "configs/tiny-cpu.json";
  if (std::filesystem::exists(rel)) return rel;
  return std::string(AUTOSP_SOURCE_DIR) + "/" + rel;
}

int fail(int code, const Status& s) {
  std::fprintf(stderr, "autosp-train: error: %s\n", s.message().c_str());
  return code;
}

void print_plan(const Trainer& t) {
  const Options& o = t.options();
  const MemoryPlan& p = t.memory_plan();
  std::printf("plan: %s, %lld layers, %s parameters; seq_len %lld x batch %lld; sp %lld, zero %lld\n",
              o.model.arch.c_str(), (long long)o.model.n_layers, human_count(double(p.num_params)).c_str(),
              (long long)o.train.seq_len, (long long)o.train.batch_size, (long long)o.parallel.sp,
              (long long)o.parallel.zero_stage);
  std::printf("  parameters   %12s  (fp32)\n", human_bytes(double(p.params)).c_str());
  std::printf("  gradients    %12s  (fp32)\n", human_bytes(double(p.grads)).c_str());
  std::printf("  optimizer    %12s  (AdamW exp_avg + exp_avg_sq)\n", human_bytes(double(p.optimizer)).c_str());
  std::printf("  activations  %12s  (train-step arena, liveness-planned; eval %s)\n",
              human_bytes(double(p.train_arena)).c_str(), human_bytes(double(p.eval_arena)).c_str());
  std::printf("  total        %12s  per rank\n", human_bytes(double(p.total())).c_str());
}

int run(const Flags& f) {
  auto opts_or = load_options(f.config, f.sets);
  if (!opts_or.ok()) return fail(2, opts_or.status());
  Options opts = opts_or.value();
  const int world = world_size_from_env();
  if (Status s = validate(opts, world, f.config); !s.ok()) return fail(2, s);
  if (world != 1)
    return fail(2, InvalidArgument("launched with " + std::to_string(world) +
                                   " ranks, but this build runs one process; use world size 1"));

  auto trainer_or = Trainer::create(opts, f.dump_ir);
  if (!trainer_or.ok()) return fail(2, trainer_or.status());
  Trainer& t = *trainer_or.value();
  if (f.plan) {
    print_plan(t);
    return 0;
  }
  if (!f.resume.empty())
    if (Status s = t.resume(f.resume); !s.ok()) return fail(2, s);

  if (f.eval_only) {
    auto ev = t.evaluate();
    if (!ev.ok()) return fail(2, ev.status());
    std::printf("{\"eval_loss\": %.6f, \"tokens\": %lld}\n", ev->loss, (long long)ev->tokens);
    return 0;
  }

  std::optional<MetricsWriter> metrics;
  if (!opts.log.metrics_file.empty()) {
    auto m = MetricsWriter::open(opts.log.metrics_file, /*append=*/!f.resume.empty());
    if (!m.ok()) return fail(2, m.status());
    metrics = std::move(m.value());
  }
  const TrainOptions& to = opts.train;
  std::printf("autosp-train: %s, %s parameters, %lld steps of %lld x %lld tokens, from step %lld\n",
              opts.model.arch.c_str(), human_count(double(t.memory_plan().num_params)).c_str(),
              (long long)to.steps, (long long)to.batch_size, (long long)to.seq_len, (long long)t.step());
  std::fflush(stdout);

  using clock = std::chrono::steady_clock;
  auto window_start = clock::now();
  const auto run_start = window_start;
  const int64_t first_step = t.step();
  double loss_acc = 0;
  int64_t window_steps = 0;
  while (t.step() < to.steps) {
    auto r = t.train_step();
    if (!r.ok()) return fail(1, r.status());
    loss_acc += r->loss;
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
      s.tokens_per_s = double(window_steps * to.batch_size * to.seq_len) / secs;
      s.step_ms = 1000.0 * secs / double(window_steps);
      s.mem_bytes = peak_rss_bytes();
      s.eta_s = all_secs / double(step - first_step) * double(to.steps - step);
      std::optional<EvalResult> ev;
      if (t.has_val() && to.eval_every > 0 && (step % to.eval_every == 0 || step == to.steps)) {
        auto e = t.evaluate();
        if (!e.ok()) return fail(1, e.status());
        ev = e.value();
      }
      std::printf("%s\n", format_progress_line(s).c_str());
      if (ev) std::printf("%s\n", format_eval_line(step, to.steps, ev->loss, ev->tokens).c_str());
      std::optional<double> eval_loss;
      if (ev) eval_loss = ev->loss;
      std::fflush(stdout);
      if (metrics)
        if (Status st = metrics->write(s, eval_loss); !st.ok()) return fail(1, st);
      loss_acc = 0;
      window_steps = 0;
      window_start = clock::now();
    }
    if (opts.checkpoint.every > 0 && (step % opts.checkpoint.every == 0 || step == to.steps))
      if (Status st = t.save_checkpoint(); !st.ok()) return fail(1, st);
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
  app.add_option("--dump-ir", f.dump_ir, "Write the graph before and after each compiler pass into this directory");
  app.add_flag("--plan", f.plan, "Print the per-rank memory plan and stop before training");
  app.add_flag("-v,--verbose", f.verbose, "Log compiler decisions (repeat for more detail)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  set_log_verbosity(f.verbose);
  return run(f);
}
