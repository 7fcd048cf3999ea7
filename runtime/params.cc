#include "runtime/params.h"

#include <cmath>

#include "core/rng.h"
#include "ir/buckets.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/reduce.h"

namespace autosp::runtime {

namespace {
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}
}  // namespace

std::vector<ParamSpec> param_specs(const ir::Graph& g) {
  std::vector<ParamSpec> out;
  for (const ir::Arg& a : g.args)
    if (a.role == ir::ArgRole::param) out.push_back({g.values[a.value].name, g.type(a.value).shape, a.init});
  return out;
}

ParamStore::ParamStore(const std::vector<ParamSpec>& specs) {
  for (const ParamSpec& s : specs) {
    Param p{s, Tensor::zeros(DType::f32, s.shape), Tensor::zeros(DType::f32, s.shape),
            Tensor::zeros(DType::f32, s.shape), Tensor::zeros(DType::f32, s.shape)};
    params_.push_back(std::move(p));
  }
}

void init_elements(const std::string& name, const ir::Init& init, uint64_t seed, int64_t begin, int64_t end,
                   float* out) {
  const Rng rng(seed, fnv1a(name));
  for (int64_t i = begin; i < end; ++i) {
    switch (init.kind) {
      case ir::Init::Kind::zeros: out[i - begin] = 0.0f; break;
      case ir::Init::Kind::ones: out[i - begin] = 1.0f; break;
      case ir::Init::Kind::normal: out[i - begin] = init.std * rng.normal(uint64_t(i)); break;
    }
  }
}

void ParamStore::initialize(uint64_t seed) {
  for (Param& p : params_) {
    const int64_t n = p.value.numel();
    init_elements(p.spec.name, p.spec.init, seed, 0, n, p.value.data<float>());
    std::fill(p.exp_avg.data<float>(), p.exp_avg.data<float>() + n, 0.0f);
    std::fill(p.exp_avg_sq.data<float>(), p.exp_avg_sq.data<float>() + n, 0.0f);
  }
}

Status bind_gradient(Executor& ex, const std::string& name, const Tensor& t) {
  if (!ex.has(name)) return Status::Ok();  // an eval program has no gradients
  RETURN_IF_ERROR(ex.bind(name, t));
  const std::string acc = ir::kAccumulatedPrefix + name;
  return ex.has(acc) ? ex.bind(acc, t) : Status::Ok();
}

Status ParamStore::bind(Executor& ex) {
  for (Param& p : params_) {
    RETURN_IF_ERROR(ex.bind(p.spec.name, p.value));
    RETURN_IF_ERROR(bind_gradient(ex, "grad." + p.spec.name, p.grad));
  }
  return Status::Ok();
}

int64_t ParamStore::num_elements() const {
  int64_t n = 0;
  for (const Param& p : params_) n += p.value.numel();
  return n;
}

double ParamStore::grad_norm() const {
  double s = 0;
  for (const Param& p : params_) s += kernels::cpu::sum_squares(p.grad.data<float>(), p.grad.numel());
  return std::sqrt(s);
}

void adamw_update(ParamStore& ps, const AdamWConfig& cfg, float lr, int64_t step, float grad_scale) {
  for (Param& p : ps.params())
    kernels::cpu::adamw_step(p.value.data<float>(), p.grad.data<float>(), p.exp_avg.data<float>(),
                             p.exp_avg_sq.data<float>(), p.value.numel(), lr, cfg.beta1, cfg.beta2, cfg.eps,
                             p.decay() ? cfg.weight_decay : 0.0f, step, grad_scale);
}

}  // namespace autosp::runtime
