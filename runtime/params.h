// ParamStore: parameters, their gradients and AdamW moments, owned by the runtime (the
// graph only names them). Initialisation draws element i of parameter P from the counter-
// based RNG at (seed, stream = hash(P's name), counter i), so any rank initialising any slice
// of P gets the values a single process would.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ir/graph.h"
#include "runtime/executor.h"

namespace autosp::runtime {

struct ParamSpec {
  std::string name;
  Shape shape;
  ir::Init init;
};

// Elements [begin, end) of parameter `name` under `init` (a shard initialises only its part,
// with the same values a whole-parameter initialisation gives there).
void init_elements(const std::string& name, const ir::Init& init, uint64_t seed, int64_t begin, int64_t end,
                   float* out);

// The parameter arguments of a graph, in argument order.
std::vector<ParamSpec> param_specs(const ir::Graph& g);

struct Param {
  ParamSpec spec;
  Tensor value, grad, exp_avg, exp_avg_sq;
  // AdamW weight decay applies to matrices only: norms' gains and biases are not decayed.
  bool decay() const { return spec.shape.rank() >= 2; }
};

// Binds gradient output `name` to t and, when the program accumulates gradients over
// micro-batches, its "accumulated.<name>" input to the same tensor (the step adds in place).
Status bind_gradient(Executor& ex, const std::string& name, const Tensor& t);

class ParamStore {
 public:
  explicit ParamStore(const std::vector<ParamSpec>& specs);
  void initialize(uint64_t seed);
  // Binds each value to its parameter name and each gradient to "grad.<name>" (when the
  // program has that output: an eval program has none).
  Status bind(Executor& ex);

  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  int64_t num_elements() const;
  // sqrt(Σ g²) over every gradient, accumulated in double.
  double grad_norm() const;

 private:
  std::vector<Param> params_;
};

struct AdamWConfig {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f;
};

// One AdamW update of every parameter; grad_scale folds in gradient clipping.
void adamw_update(ParamStore& ps, const AdamWConfig& cfg, float lr, int64_t step, float grad_scale);

}  // namespace autosp::runtime
