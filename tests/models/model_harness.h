// Compiles a model's training step (autodiff + lower) and runs it on the CPU backend with
// parameters from a ParamStore — the trainer's path without data loading or the optimizer.
#pragma once
#include <memory>

#include "models/model.h"
#include "runtime/executor.h"
#include "runtime/params.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/lower.h"

namespace autosp::testing {

struct CompiledModel {
  std::unique_ptr<runtime::Backend> backend;
  std::unique_ptr<runtime::ParamStore> params;
  std::unique_ptr<runtime::Executor> step;

  CompiledModel(const models::ModelConfig& cfg, const models::StepShape& shape, uint64_t seed) {
    ir::Graph g = models::build(cfg, shape).value();
    params = std::make_unique<runtime::ParamStore>(runtime::param_specs(g));
    params->initialize(seed);
    AUTOSP_CHECK(sp::make_autodiff_pass()->run(g, {}).ok());
    backend = runtime::make_cpu_backend();
    step = std::make_unique<runtime::Executor>(sp::lower(g).value(), *backend);
    AUTOSP_CHECK(params->bind(*step).ok());
    step->tensor(sp::kLossSeedInput).data<float>()[0] = 1.0f;
  }
  // Fills tokens/targets/positions (and segments) from a token row generator.
  void set_batch(const std::vector<int32_t>& tokens, const std::vector<int32_t>& targets,
                 const std::vector<int32_t>& positions, const std::vector<int32_t>& segments = {}) {
    auto put = [&](const char* n, const std::vector<int32_t>& v) {
      if (step->has(n)) std::copy(v.begin(), v.end(), step->tensor(n).data<int32_t>());
    };
    put("tokens", tokens);
    put("targets", targets);
    put("positions", positions);
    if (!segments.empty()) put("segments", segments);
  }
  double run() {
    AUTOSP_CHECK(step->run().ok());
    return step->tensor("loss").data<float>()[0];
  }
};

}  // namespace autosp::testing
