// The op registry: for each Op its name, arity, attribute struct, shape/dtype inference,
// VJP rule and kernel names. Adding an op = one entry in registry.cc + its rules in the
// ops_<family>.cc file + one kernel pair + one test.
#pragma once
#include <vector>

#include "core/status.h"
#include "ir/graph.h"

namespace autosp::ir {

class Builder;

// Fills `out` with the output types for `n`'s inputs (already in g) and attributes.
using InferFn = Status (*)(const Graph& g, const Node& n, std::vector<TensorType>& out);
// Emits the backward of `n` with `b`. out_grads[i] is d(loss)/d(output i) or kNoValue when
// that output does not reach the loss. Sets in_grads[i] for every input that needs a gradient
// (needs[i]) and may leave others kNoValue. Errors are user errors (e.g. a gradient flowing
// into an output that is declared non-differentiable).
using VjpFn = Status (*)(Builder& b, const Node& n, const std::vector<ValueId>& out_grads,
                         const std::vector<bool>& needs, std::vector<ValueId>& in_grads);

inline constexpr int kVariadicOutputs = -1;

struct OpInfo {
  Op op;
  const char* name;
  int min_inputs, max_inputs;
  int num_outputs;  // kVariadicOutputs: decided by the attributes (unpack)
  // Bit i set: output i carries no gradient (attention's lse; cross_entropy's count and lse).
  // Autodiff treats such outputs as constants.
  uint32_t nondiff_outputs;
  Attrs default_attrs;  // also fixes which attribute struct the op takes
  InferFn infer;
  VjpFn vjp;              // null: not differentiable (backward ops)
  const char* cpu_kernel;
  const char* cuda_kernel;
};

const OpInfo& op_info(Op op);

}  // namespace autosp::ir
