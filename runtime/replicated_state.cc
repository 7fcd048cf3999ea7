// ZeRO stage 0: every rank holds whole parameters, gradients (all-reduced by the program) and
// AdamW moments, and rank 0 writes the single-writer checkpoint.
#include <cstring>

#include "runtime/checkpoint.h"
#include "runtime/param_state.h"

namespace autosp::runtime {

namespace {

Status copy_into(const NamedTensors& from, const std::string& name, const std::string& what, Tensor& dst,
                 const std::string& path) {
  for (const auto& [n, t] : from) {
    if (n != name) continue;
    if (t.dtype() != DType::f32 || t.shape() != dst.shape())
      return InvalidArgument("checkpoint " + path + ": " + what + " of " + name + " is " +
                             std::string(dtype_name(t.dtype())) + t.shape().str() + ", this config needs f32" +
                             dst.shape().str());
    std::memcpy(dst.raw(), t.raw(), t.nbytes());
    return Status::Ok();
  }
  return InvalidArgument("checkpoint " + path + " has no " + what + " for " + name);
}

class ReplicatedState final : public ParameterState {
 public:
  explicit ReplicatedState(const std::vector<ParamSpec>& specs) : store_(specs) {}

  void initialize(uint64_t seed) override { store_.initialize(seed); }
  Status bind(Executor& ex) override { return store_.bind(ex); }
  double grad_norm() override { return store_.grad_norm(); }
  void update(const AdamWConfig& cfg, float lr, int64_t step, float grad_scale) override {
    adamw_update(store_, cfg, lr, step, grad_scale);
  }
  PersistentBytes persistent_bytes() const override {
    const int64_t b = store_.num_elements() * int64_t(sizeof(float));
    return {b, b, 2 * b};
  }
  int64_t num_elements() const override { return store_.num_elements(); }
  NamedTensors full_parameters() override {
    NamedTensors out;
    for (Param& p : store_.params()) out.push_back({p.spec.name, p.value});
    return out;
  }
  NamedTensors full_gradients() override {
    NamedTensors out;
    for (Param& p : store_.params()) out.push_back({p.spec.name, p.grad});
    return out;
  }

  Status save(Communicator* world, const std::string& dir, int64_t step, const nlohmann::json& state,
              int keep) override {
    Status st;
    if (!world || world->rank() == 0) {
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
      RETURN_IF_ERROR(copy_into(s.exp_avg, p.spec.name, "exp_avg", p.exp_avg, s.path));
      RETURN_IF_ERROR(copy_into(s.exp_avg_sq, p.spec.name, "exp_avg_sq", p.exp_avg_sq, s.path));
    }
    return Status::Ok();
  }

 private:
  ParamStore store_;
};

}  // namespace

std::unique_ptr<ParameterState> make_replicated_state(const std::vector<ParamSpec>& specs) {
  return std::make_unique<ReplicatedState>(specs);
}

}  // namespace autosp::runtime
