// The op test harness: every differentiable op is checked end to end through the same path
// training uses — builder graph -> autodiff pass (the op's VJP rule) -> lower -> executor on
// the CPU kernels — against central finite differences of the forward program.
//
// Adding an op: (1) registry entry + rules, (2) CPU kernel with its own test against a naive
// formula in tests/kernels, (3) a case in test_op_gradients.cc built with this harness.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ir/builder.h"

namespace autosp::testing {

struct GradCheckInput {
  std::string name;
  ir::TensorType type;
  bool differentiable;          // f32 inputs become parameters and get gradients
  std::vector<int32_t> ints;    // values for i32 inputs
  std::vector<float> floats;    // values for non-differentiable f32 inputs (else random)
};

struct GradCheckResult {
  double max_abs_err = 0;     // worst |analytic - numeric| over checked elements
  double max_scaled_err = 0;  // worst err / (atol + rtol * |numeric|); <= 1 passes
  int checked = 0;
};

// `body` applies the op to the inputs and returns the output to test. The harness adds
// loss = sum(out * R) with fixed random R, so every output element carries a distinct weight.
GradCheckResult grad_check(const std::vector<GradCheckInput>& inputs,
                           const std::function<ir::ValueId(ir::Builder&, const std::vector<ir::ValueId>&)>& body,
                           double atol, double rtol, double eps = 1e-2, int samples_per_input = 24);

}  // namespace autosp::testing
