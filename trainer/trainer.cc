#include "trainer/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/log.h"
#include "kernels/cpu/threads.h"
#include "runtime/pretrained.h"
#include "sp_compiler/autodiff.h"
#ifdef AUTOSP_HAVE_CUDA
#include "runtime/cuda/comm_nccl.h"
#include "runtime/cuda/cuda_backend.h"
#endif
#include "trainer/compile.h"
#include "trainer/schedule.h"

namespace autosp::trainer {

namespace {

// Loaders read whole global batches' windows: dp replicas × batch_size rows per step.
StatusOr<DataLoader> open_loader(const std::string& path, const Options& o, int dp, uint64_t seed) {
  ASSIGN_OR_RETURN(TokenFile f, TokenFile::open(path, o.data.format, o.model.vocab_size));
  return DataLoader::create(std::move(f), o.train.seq_len, o.train.batch_size * dp, seed, o.data.documents,
                            int32_t(o.data.eod_token));
}

// The backend train.device names. A CUDA rank takes GPU (local rank mod #GPUs): one process
// per GPU under mpirun, or every thread of a local test on one GPU.
StatusOr<std::unique_ptr<runtime::Backend>> make_backend(const Options& o, int rank) {
  if (o.train.device == "cpu") return runtime::make_cpu_backend();
#ifdef AUTOSP_HAVE_CUDA
  std::string why;
  const int n = runtime::cuda_device_count(&why);
  if (n == 0) return FailedPrecondition("train.device = \"cuda\", but this machine has no usable GPU: " + why);
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (!local) local = std::getenv("SLURM_LOCALID");
  const int local_rank = local ? std::atoi(local) : rank;
  return runtime::make_cuda_backend(local_rank % n);
#else
  (void)rank;
  return FailedPrecondition("train.device = \"cuda\", but this autosp-train was built without CUDA (no nvcc at "
                            "configure time, or -DAUTOSP_CUDA=OFF)");
#endif
}

double scalar(runtime::Executor& ex, const char* name) {
  float v = 0;
  ex.read(name, &v, sizeof v);
  return v;
}

}  // namespace

StatusOr<std::unique_ptr<Trainer>> Trainer::create(const Options& opts, const std::string& dump_ir_dir,
                                                   runtime::Communicator* world,
                                                   std::unique_ptr<runtime::Backend> backend,
                                                   const DeviceWorld& device_world) {
  std::unique_ptr<Trainer> t(new Trainer(opts));
  t->world_ = world;
  const int world_size = t->world_size();
  if (backend) {
    t->backend_ = std::move(backend);
  } else {
    ASSIGN_OR_RETURN(t->backend_, make_backend(opts, t->rank()));
  }
  // The cost model's preset follows the GPU, and every rank must compile the same program:
  // an H200 preset only when every rank's GPU is one.
  std::string hw = hardware_preset(opts, t->backend_->device_name());
  if (world_size > 1 && opts.train.hardware == "auto" && opts.train.device == "cuda") {
    float h200 = hw == "h200" ? 1.0f : 0.0f;
    world->all_reduce_sum(&h200, 1);
    hw = h200 == float(world_size) ? "h200" : "h100";
  }
  // On the CPU the preset is scaled to the cores a rank keeps busy, as every rank agrees: each
  // one's share may differ (affinity, threads), and ranks must compile the same program. The
  // mean of shares rounded to 1/16 of a core sums exactly, so every rank gets the same value.
  Options compiled_opts = opts;
  if (hw == "cpu") {
    const int here = kernels::cpu::ranks_on_this_machine(world_size);
    float share = std::round(16.0f * float(kernels::cpu::cpu_cores_per_rank(kernels::cpu::cpu_threads(), here))) / 16.0f;
    if (world_size > 1) {
      world->all_reduce_sum(&share, 1);
      share /= float(world_size);
    }
    compiled_opts.cpu_cores_per_rank = std::max(1.0 / 16, double(share));
  }
  // Only rank 0 dumps: every rank's graph is the same program.
  ASSIGN_OR_RETURN(Compiled c, compile(compiled_opts, world_size, t->rank() == 0 ? dump_ir_dir : "", hw));
  const sp::SpOptions spo = c.mesh;
  t->plan_ = c.plan;
  const bool device = t->backend_->device() != Device::host;
  if (world_size > 1) {
    runtime::Communicator* mesh_world = world;
    if (device && device_world) {
      t->device_world_ = device_world(*world, *t->backend_);
      mesh_world = t->device_world_.get();
    }
#ifdef AUTOSP_HAVE_CUDA
    // Under mpirun the GPUs talk through NCCL, bootstrapped over MPI; a local test's ranks
    // share one GPU through the local communicator, which moves device buffers itself.
    else if (device && runtime::launched_by_mpi()) {
      t->device_world_ = runtime::make_nccl_communicator(*world, runtime::cuda_comm_stream(*t->backend_));
      mesh_world = t->device_world_.get();
    }
#endif
    t->mesh_ = runtime::Mesh::create(*mesh_world, {spo.dp, spo.sp, t->plan_.layout.inner});
  }
  const int sp_rank = t->mesh_ ? t->mesh_->sp_rank() : 0, dp_rank = t->mesh_ ? t->mesh_->dp_rank() : 0;
  t->shard_.row_begin = int64_t(dp_rank) * opts.train.batch_size;
  t->shard_.row_end = t->shard_.row_begin + opts.train.batch_size;
  t->shard_.positions = t->plan_.layout.positions(sp_rank);
  t->shard_.seq_len = opts.train.seq_len;

  if (c.buckets.stage == 0)
    t->params_ = runtime::make_replicated_state(runtime::param_specs(c.forward), t->backend_.get());
  else
    t->params_ = runtime::make_zero_state(c.buckets, *world, &t->mesh_->group(ir::MeshGroup::world),
                                          t->backend_.get());
  if (opts.checkpoint.init_from.empty()) {
    t->params_->initialize(uint64_t(opts.train.seed));
  } else {  // load() sets every parameter and moment: no random initialisation to throw away
    int skipped = 0;
    ASSIGN_OR_RETURN(runtime::TrainState start,
                     runtime::load_pretrained(opts.checkpoint.init_from, runtime::param_specs(c.forward), &skipped));
    RETURN_IF_ERROR(t->params_->load(start));
    AUTOSP_LOG(1) << "parameters from " << opts.checkpoint.init_from << " (" << skipped
                  << " other tensors there skipped)";
  }
  t->plan_mem_ = trainer::memory_plan(c);
  t->flops_per_token_ = model_flops_per_token(opts, c);
  t->peak_flops_ = c.hardware.peak_flops;
  // Training and eval steps never overlap: one arena serves both (the plan counts the larger).
  auto arena = t->backend_->allocate(size_t(std::max(c.train.arena_bytes, c.eval.arena_bytes)));
  t->train_ = std::make_unique<runtime::Executor>(std::move(c.train), *t->backend_, t->mesh_.get(), arena);
  t->eval_ = std::make_unique<runtime::Executor>(std::move(c.eval), *t->backend_, t->mesh_.get(), arena);
  RETURN_IF_ERROR(t->params_->bind(*t->train_));
  RETURN_IF_ERROR(t->params_->bind(*t->eval_));
  // Every rank holds the same loss and backpropagates partial sums, so the seeds add to 1.
  // Each micro-batch's loss is a mean; the optimizer step takes the mean over its micro-batches.
  const float seed = 1.0f / (float(world_size) * float(opts.train.grad_accum_steps));
  t->train_->write(sp::kLossSeedInput, &seed, sizeof seed);

  ASSIGN_OR_RETURN(DataLoader train_data, open_loader(opts.data.train, opts, spo.dp, uint64_t(opts.train.seed)));
  t->train_data_ = std::move(train_data);
  if (!opts.data.val.empty() && opts.train.eval_steps > 0) {
    ASSIGN_OR_RETURN(DataLoader val, open_loader(opts.data.val, opts, spo.dp, uint64_t(opts.train.seed) + 1));
    t->val_ = std::move(val);
  }
  return t;
}

StatusOr<StepResult> Trainer::train_step() {
  const TrainOptions& to = opts_.train;
  const int64_t micro = to.grad_accum_steps;
  // With several micro-batches the program adds each one's gradients onto the state's
  // (accumulate_gradients), which therefore start from zero; with one it overwrites them.
  if (micro > 1) params_->zero_gradients();
  StepResult r;
  double loss = 0;
  for (int64_t k = 0; k < micro; ++k) {
    feed_shard(*train_data_, step_ * micro + k, shard_, *train_);  // the data position is a function of the step
    RETURN_IF_ERROR(train_->run());
    loss += scalar(*train_, "loss");
    r.tokens += int64_t(scalar(*train_, "count"));
    r.exposed_comm_ms += 1000.0 * train_->exposed_comm_seconds();
  }
  r.loss = loss / double(micro);
  r.grad_norm = params_->grad_norm();  // gradients are all-reduced: the same on every rank
  r.lr = learning_rate(step_, to);
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm))
    return FailedPrecondition("non-finite " + std::string(std::isfinite(r.loss) ? "gradient norm" : "loss") +
                              " at step " + std::to_string(step_ + 1) + " (loss " + std::to_string(r.loss) +
                              ", grad norm " + std::to_string(r.grad_norm) + "); parameters were not updated");
  const float clip = to.grad_clip > 0 && r.grad_norm > to.grad_clip ? float(to.grad_clip / r.grad_norm) : 1.0f;
  runtime::AdamWConfig cfg{float(to.beta1), float(to.beta2), 1e-8f, float(to.weight_decay)};
  params_->update(cfg, float(r.lr), step_ + 1, clip);
  r.step = ++step_;
  return r;
}

StatusOr<EvalResult> Trainer::evaluate() {
  if (!val_) return FailedPrecondition("no validation data (data.val is empty or train.eval_steps is 0)");
  double loss_sum = 0, count = 0;
  for (int64_t i = 0; i < opts_.train.eval_steps; ++i) {
    feed_shard(*val_, i, shard_, *eval_);
    RETURN_IF_ERROR(eval_->run());
    loss_sum += scalar(*eval_, "loss_sum");  // all-reduced over the world by shard_sequence
    count += scalar(*eval_, "count");
  }
  return EvalResult{count > 0 ? loss_sum / count : 0.0, int64_t(count)};
}

Status Trainer::save_checkpoint() const {
  // The data position is a pure function of the step (DataLoader::get), and nothing else is
  // random after initialisation, so step + seed + weights + moments resume exactly.
  const nlohmann::json state = {{"data_step", step_}, {"seed", opts_.train.seed}, {"config", to_json(opts_)}};
  return params_->save(world_, opts_.checkpoint.dir, step_, state, int(opts_.checkpoint.keep));
}

Status Trainer::resume(const std::string& path) {
  ASSIGN_OR_RETURN(runtime::TrainState s, runtime::load_train_state(path));
  RETURN_IF_ERROR(params_->load(s));
  step_ = s.step;
  return Status::Ok();
}

}  // namespace autosp::trainer
