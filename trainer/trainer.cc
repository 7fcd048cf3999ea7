#include "trainer/trainer.h"

#include <cmath>
#include <cstring>

#include "models/model.h"
#include "runtime/checkpoint.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/lower.h"
#include "trainer/schedule.h"

namespace autosp::trainer {

namespace {

int64_t bytes_of(const runtime::ParamStore& ps) { return ps.num_elements() * int64_t(sizeof(float)); }

StatusOr<DataLoader> open_loader(const std::string& path, const Options& o, uint64_t seed) {
  ASSIGN_OR_RETURN(TokenFile f, TokenFile::open(path, o.data.format, o.model.vocab_size));
  return DataLoader::create(std::move(f), o.train.seq_len, o.train.batch_size, seed, o.data.documents,
                            int32_t(o.data.eod_token));
}

double scalar(runtime::Executor& ex, const char* name) { return ex.tensor(name).data<float>()[0]; }

}  // namespace

StatusOr<std::unique_ptr<Trainer>> Trainer::create(const Options& opts, const std::string& dump_ir_dir) {
  std::unique_ptr<Trainer> t(new Trainer(opts));
  if (opts.train.dtype != "f32")
    return InvalidArgument("train.dtype: \"" + opts.train.dtype + "\" needs the CUDA backend; the CPU backend runs f32");
  const models::StepShape shape{opts.train.batch_size, opts.train.seq_len, opts.data.documents};
  ASSIGN_OR_RETURN(ir::Graph forward, models::build(opts.model, shape));
  ir::Graph train_graph = forward;
  sp::Pipeline pipeline;
  pipeline.add(sp::make_autodiff_pass());
  RETURN_IF_ERROR(pipeline.run(train_graph, {dump_ir_dir}));
  ASSIGN_OR_RETURN(ir::Program train_prog, sp::lower(train_graph));
  ASSIGN_OR_RETURN(ir::Program eval_prog, sp::lower(forward));

  t->backend_ = runtime::make_cpu_backend();
  t->params_ = std::make_unique<runtime::ParamStore>(runtime::param_specs(forward));
  t->params_->initialize(uint64_t(opts.train.seed));
  t->plan_.num_params = t->params_->num_elements();
  t->plan_.params = t->plan_.grads = bytes_of(*t->params_);
  t->plan_.optimizer = 2 * bytes_of(*t->params_);
  t->plan_.train_arena = train_prog.arena_bytes;
  t->plan_.eval_arena = eval_prog.arena_bytes;
  t->train_ = std::make_unique<runtime::Executor>(std::move(train_prog), *t->backend_);
  t->eval_ = std::make_unique<runtime::Executor>(std::move(eval_prog), *t->backend_);
  RETURN_IF_ERROR(t->params_->bind(*t->train_));
  RETURN_IF_ERROR(t->params_->bind(*t->eval_));
  Tensor seed = Tensor::zeros(DType::f32, {});
  seed.data<float>()[0] = 1.0f;  // d(loss)/d(loss): no loss scaling in fp32
  RETURN_IF_ERROR(t->train_->bind(sp::kLossSeedInput, seed));

  ASSIGN_OR_RETURN(DataLoader train_data, open_loader(opts.data.train, opts, uint64_t(opts.train.seed)));
  t->train_data_ = std::move(train_data);
  if (!opts.data.val.empty() && opts.train.eval_steps > 0) {
    ASSIGN_OR_RETURN(DataLoader val, open_loader(opts.data.val, opts, uint64_t(opts.train.seed) + 1));
    t->val_ = std::move(val);
  }
  return t;
}

void Trainer::bind_batch(runtime::Executor& ex, const Batch& b) {
  // Copy into the executor's own input tensors so the loader's buffers stay free to reuse.
  auto copy = [&](const char* name, const Tensor& src) {
    if (!ex.has(name)) return;
    Tensor& dst = ex.tensor(name);
    std::memcpy(dst.raw(), src.raw(), src.nbytes());
  };
  copy("tokens", b.tokens);
  copy("targets", b.targets);
  copy("positions", b.positions);
  copy("segments", b.segment_ids);
}

StatusOr<StepResult> Trainer::train_step() {
  const TrainOptions& to = opts_.train;
  bind_batch(*train_, train_data_->get(step_));
  RETURN_IF_ERROR(train_->run());
  StepResult r;
  r.loss = scalar(*train_, "loss");
  r.tokens = int64_t(scalar(*train_, "count"));
  r.grad_norm = params_->grad_norm();
  r.lr = learning_rate(step_, to);
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm))
    return FailedPrecondition("non-finite " + std::string(std::isfinite(r.loss) ? "gradient norm" : "loss") +
                              " at step " + std::to_string(step_ + 1) + " (loss " + std::to_string(r.loss) +
                              ", grad norm " + std::to_string(r.grad_norm) + "); parameters were not updated");
  const float clip = to.grad_clip > 0 && r.grad_norm > to.grad_clip ? float(to.grad_clip / r.grad_norm) : 1.0f;
  runtime::AdamWConfig cfg{float(to.beta1), float(to.beta2), 1e-8f, float(to.weight_decay)};
  runtime::adamw_update(*params_, cfg, float(r.lr), step_ + 1, clip);
  r.step = ++step_;
  return r;
}

StatusOr<EvalResult> Trainer::evaluate() {
  if (!val_) return FailedPrecondition("no validation data (data.val is empty or train.eval_steps is 0)");
  double loss_sum = 0, count = 0;
  for (int64_t i = 0; i < opts_.train.eval_steps; ++i) {
    bind_batch(*eval_, val_->get(i));
    RETURN_IF_ERROR(eval_->run());
    loss_sum += scalar(*eval_, "loss_sum");
    count += scalar(*eval_, "count");
  }
  return EvalResult{count > 0 ? loss_sum / count : 0.0, int64_t(count)};
}

Status Trainer::save_checkpoint() const {
  runtime::Checkpoint ck;
  for (const runtime::Param& p : params_->params()) {
    ck.model.push_back({p.spec.name, p.value});
    ck.optimizer.push_back({p.spec.name + ".exp_avg", p.exp_avg});
    ck.optimizer.push_back({p.spec.name + ".exp_avg_sq", p.exp_avg_sq});
  }
  // The data position is a pure function of the step (DataLoader::get), and nothing else is
  // random after initialisation, so step + seed + weights + moments resume exactly.
  ck.state = {{"data_step", step_}, {"seed", opts_.train.seed}, {"config", to_json(opts_)}};
  return runtime::save_checkpoint(opts_.checkpoint.dir, step_, ck, int(opts_.checkpoint.keep));
}

Status Trainer::resume(const std::string& path) {
  ASSIGN_OR_RETURN(runtime::Checkpoint ck, runtime::load_checkpoint(path));
  auto load = [&](const runtime::NamedTensors& from, const std::string& name, Tensor& dst) -> Status {
    for (const auto& [n, t] : from) {
      if (n != name) continue;
      if (t.dtype() != DType::f32 || t.shape() != dst.shape())
        return InvalidArgument("checkpoint " + ck.path + ": " + name + " is " + std::string(dtype_name(t.dtype())) +
                               t.shape().str() + ", this config needs f32" + dst.shape().str());
      std::memcpy(dst.raw(), t.raw(), t.nbytes());
      return Status::Ok();
    }
    return InvalidArgument("checkpoint " + ck.path + " has no tensor " + name);
  };
  for (runtime::Param& p : params_->params()) {
    RETURN_IF_ERROR(load(ck.model, p.spec.name, p.value));
    RETURN_IF_ERROR(load(ck.optimizer, p.spec.name + ".exp_avg", p.exp_avg));
    RETURN_IF_ERROR(load(ck.optimizer, p.spec.name + ".exp_avg_sq", p.exp_avg_sq));
  }
  step_ = ck.step;
  return Status::Ok();
}

}  // namespace autosp::trainer
