#include "grad_check.h"

#include <catch2/catch.hpp>
#include <cmath>

#include "core/rng.h"
#include "runtime/executor.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/lower.h"

namespace autosp::testing {

GradCheckResult grad_check(const std::vector<GradCheckInput>& inputs,
                           const std::function<ir::ValueId(ir::Builder&, const std::vector<ir::ValueId>&)>& body,
                           double atol, double rtol, double eps, int samples_per_input) {
  ir::Graph g;
  ir::Builder b(g);
  std::vector<ir::ValueId> vals;
  for (const auto& in : inputs)
    vals.push_back(in.differentiable ? b.param(in.name, in.type.shape, {})
                                     : b.input(in.name, in.type.dtype, in.type.shape));
  ir::ValueId out = body(b, vals);
  ir::ValueId r = b.input("R", DType::f32, b.shape(out));
  b.output("loss", b.sum(b.mul(out, r)));
  ir::Graph fwd = g;

  auto ad = sp::make_autodiff_pass();
  Status st = ad->run(g, {});
  INFO(st.message());
  REQUIRE(st.ok());
  auto backend = runtime::make_cpu_backend();
  runtime::Executor grad_ex(sp::lower(g).value(), *backend);
  runtime::Executor fwd_ex(sp::lower(fwd).value(), *backend);

  // Inputs: normal(0, 1) floats, given ints; R is normal scaled so the loss stays O(1).
  Rng rng(1234);
  uint64_t ctr = 0;
  std::vector<Tensor> tensors;
  for (const auto& in : inputs) {
    Tensor t = Tensor::zeros(in.type.dtype, in.type.shape);
    if (in.type.dtype == DType::i32)
      std::copy(in.ints.begin(), in.ints.end(), t.data<int32_t>());
    else if (!in.floats.empty())
      std::copy(in.floats.begin(), in.floats.end(), t.data<float>());
    else
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = rng.normal(ctr++);
    tensors.push_back(t);
    REQUIRE(grad_ex.bind(in.name, t).ok());
    REQUIRE(fwd_ex.bind(in.name, t).ok());
  }
  Tensor rt = Tensor::zeros(DType::f32, b.shape(out));
  for (int64_t i = 0; i < rt.numel(); ++i) rt.data<float>()[i] = rng.normal(ctr++) / std::sqrt(float(rt.numel()));
  REQUIRE(grad_ex.bind("R", rt).ok());
  REQUIRE(fwd_ex.bind("R", rt).ok());
  Tensor seed = Tensor::zeros(DType::f32, {});
  seed.data<float>()[0] = 1.0f;
  REQUIRE(grad_ex.bind(sp::kLossSeedInput, seed).ok());
  REQUIRE(grad_ex.run().ok());

  auto loss_at = [&]() {
    REQUIRE(fwd_ex.run().ok());
    return double(fwd_ex.tensor("loss").data<float>()[0]);
  };
  GradCheckResult res;
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].differentiable) continue;
    const Tensor& grad = grad_ex.tensor(sp::kGradPrefix + inputs[k].name);
    float* x = tensors[k].data<float>();
    const int64_t n = tensors[k].numel();
    const int64_t step = std::max<int64_t>(1, n / samples_per_input);
    for (int64_t i = 0; i < n; i += step) {
      const float x0 = x[i];
      x[i] = x0 + float(eps);
      const double up = loss_at();
      x[i] = x0 - float(eps);
      const double down = loss_at();
      x[i] = x0;
      const double numeric = (up - down) / (2 * eps);
      const double analytic = grad.data<float>()[i];
      const double err = std::abs(analytic - numeric);
      res.max_abs_err = std::max(res.max_abs_err, err);
      res.max_scaled_err = std::max(res.max_scaled_err, err / (atol + rtol * std::abs(numeric)));
      if (err > atol + rtol * std::abs(numeric))
        UNSCOPED_INFO(inputs[k].name << "[" << i << "]: analytic " << analytic << " numeric " << numeric);
      ++res.checked;
    }
  }
  return res;
}

}  // namespace autosp::testing
