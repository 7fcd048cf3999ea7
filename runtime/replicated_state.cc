// ZeRO stage 0: every rank holds whole parameters, gradients (all-reduced by the program) and
// AdamW moments, and rank 0 writes the single-writer checkpoint.
//
// On a device backend the live tensors are the device's (the program binds them and the
// backend runs the optimizer on them); the host ParamStore is their mirror for initialisation,
// checkpoints and full_parameters(), copied across only at those moments.
#include <cmath>
#include <cstring>

#include "runtime/checkpoint.h"
#include "runtime/param_state.h"

namespace autosp::runtime {

namespace {

Status copy_into(const NamedTensors& from, const std::string& name, const std::string& what, Tensor& dst,
                 const std::string& path) {
  for (const auto& [n, t] : from) {
    if (n != name) continue;
    if ((t.dtype() != DType::f32 && t.dtype() != DType::bf16) || t.shape() != dst.shape())
      return InvalidArgument("checkpoint " + path + ": " + what + " of " + name + " is " +
                             std::string(dtype_name(t.dtype())) + t.shape().str() + ", this config needs f32 or bf16" +
                             dst.shape().str());
    read_as_f32(t, 0, t.numel(), dst.data<float>());
    return Status::Ok();
  }
  return InvalidArgument("checkpoint " + path + " has no " + what + " for " + name);
}

class ReplicatedState final : public ParameterState {
 public:
  ReplicatedState(const std::vector<ParamSpec>& specs, Backend* device) : store_(specs), device_(device) {
    if (!device_) return;
    auto alloc = [&](const Tensor& like) {
      return Tensor(device_->allocate(like.nbytes()), 0, DType::f32, like.shape());
    };
    for (const Param& p : store_.params()) {
      dev_.push_back({p.spec, alloc(p.value), alloc(p.grad), alloc(p.exp_avg), alloc(p.exp_avg_sq)});
      // Device memory starts as garbage, the host mirror's gradients as zeros: until a step
      // writes them, grad_norm() and full_gradients() must see the zeros the host path does.
      device_->upload(dev_.back().grad.raw(), p.grad.raw(), p.grad.nbytes());
    }
  }

  void initialize(uint64_t seed) override {
    store_.initialize(seed);
    push();
  }
  Status bind(Executor& ex) override {
    if (!device_) return store_.bind(ex);
    for (Param& p : dev_) {
      RETURN_IF_ERROR(ex.bind(p.spec.name, p.value));
      RETURN_IF_ERROR(bind_gradient(ex, "grad." + p.spec.name, p.grad));
    }
    return Status::Ok();
  }
  void zero_gradients() override {
    if (!device_) {
      for (Param& p : store_.params()) std::memset(p.grad.raw(), 0, p.grad.nbytes());
      return;
    }
    for (Param& p : dev_) device_->fill_zero(p.grad.raw(), p.grad.nbytes());
  }
  double grad_norm() override {
    if (!device_) return store_.grad_norm();
    std::vector<Tensor> grads;
    for (const Param& p : dev_) grads.push_back(p.grad);
    return std::sqrt(device_->sum_squares(grads));
  }
  void update(const AdamWConfig& cfg, float lr, int64_t step, float grad_scale) override {
    if (!device_) return adamw_update(store_, cfg, lr, step, grad_scale);
    for (Param& p : dev_)
      device_->adamw(p.value, p.grad, p.exp_avg, p.exp_avg_sq,
                     {lr, cfg.beta1, cfg.beta2, cfg.eps, p.decay() ? cfg.weight_decay : 0.0f, step, grad_scale});
  }
  PersistentBytes persistent_bytes() const override {
    const int64_t b = store_.num_elements() * int64_t(sizeof(float));
    return {b, b, 2 * b};
  }
  int64_t num_elements() const override { return store_.num_elements(); }
  NamedTensors full_parameters() override {
    pull(&Param::value);
    NamedTensors out;
    for (Param& p : store_.params()) out.push_back({p.spec.name, p.value});
    return out;
  }
  NamedTensors full_gradients() override {
    pull(&Param::grad);
    NamedTensors out;
    for (Param& p : store_.params()) out.push_back({p.spec.name, p.grad});
    return out;
  }

  Status save(Communicator* world, const std::string& dir, int64_t step, const nlohmann::json& state,
              int keep) override {
    Status st;
    if (!world || world->rank() == 0) {
      for (Tensor Param::*t : {&Param::value, &Param::exp_avg, &Param::exp_avg_sq}) pull(t);
      Checkpoint ck;
      for (const Param& p : store_.params()) {
        ck.model.push_back({p.spec.name, p.value});
        ck.optimizer.push_back({p.spec.name + ".exp_avg", p.exp_avg});
        ck.optimizer.push_back({p.spec.name + ".exp_avg_sq", p.exp_avg_sq});
      }
      ck.state = state;
      st = save_checkpoint(dir, step, ck, keep);
    }
    if (world) {  // every rank learns whether rank 0's write worked
      float failed = st.ok() ? 0.0f : 1.0f;
      world->all_reduce_sum(&failed, 1);
      if (failed > 0 && st.ok()) st = IoError("rank 0 could not write the checkpoint under " + dir);
    }
    return st;
  }

  Status load(const TrainState& s) override {
    for (Param& p : store_.params()) {
      RETURN_IF_ERROR(copy_into(s.params, p.spec.name, "the parameter", p.value, s.path));
      if (s.zero_moments) {
        std::memset(p.exp_avg.raw(), 0, p.exp_avg.nbytes());
        std::memset(p.exp_avg_sq.raw(), 0, p.exp_avg_sq.nbytes());
        continue;
      }
      RETURN_IF_ERROR(copy_into(s.exp_avg, p.spec.name, "exp_avg", p.exp_avg, s.path));
      RETURN_IF_ERROR(copy_into(s.exp_avg_sq, p.spec.name, "exp_avg_sq", p.exp_avg_sq, s.path));
    }
    push();
    return Status::Ok();
  }

 private:
  // Host mirror -> device: values and moments (gradients are the program's output).
  void push() {
    if (!device_) return;
    for (size_t i = 0; i < dev_.size(); ++i)
      for (Tensor Param::*t : {&Param::value, &Param::exp_avg, &Param::exp_avg_sq})
        device_->upload((dev_[i].*t).raw(), (store_.params()[i].*t).raw(), (dev_[i].*t).nbytes());
  }
  // Device -> host mirror, for one kind of tensor.
  void pull(Tensor Param::*t) {
    if (!device_) return;
    for (size_t i = 0; i < dev_.size(); ++i)
      device_->download((store_.params()[i].*t).raw(), (dev_[i].*t).raw(), (dev_[i].*t).nbytes());
  }

  ParamStore store_;
  Backend* device_;          // null: the host tensors are the live ones
  std::vector<Param> dev_;   // the live tensors on a device backend
};

}  // namespace

std::unique_ptr<ParameterState> make_replicated_state(const std::vector<ParamSpec>& specs, Backend* backend) {
  return std::make_unique<ReplicatedState>(specs, backend && backend->device() != Device::host ? backend : nullptr);
}

}  // namespace autosp::runtime
