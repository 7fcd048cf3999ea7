#include "sp_compiler/accumulate_gradients.h"

#include "core/log.h"
#include "ir/buckets.h"
#include "ir/builder.h"
#include "sp_compiler/autodiff.h"

namespace autosp::sp {

namespace {

bool is_gradient(const std::string& name) {
  for (const char* prefix : {kGradPrefix, ir::kGradBucketPrefix, ir::kGradShardPrefix})
    if (name.rfind(prefix, 0) == 0) return true;
  return false;
}

class AccumulateGradients final : public Pass {
 public:
  std::string_view name() const override { return "accumulate_gradients"; }

  Status run(ir::Graph& g, const PassContext&) override {
    ir::Builder b(g);
    int n = 0;
    // Outputs are rewritten by index: add_arg and the builder append to the graph's vectors.
    for (size_t i = 0; i < g.outputs.size(); ++i) {
      if (!is_gradient(g.outputs[i].name)) continue;
      const ir::ValueId grad = g.outputs[i].value;
      const ir::ValueId acc = g.add_arg(kAccumulatedPrefix + g.outputs[i].name, g.type(grad), ir::ArgRole::input);
      g.outputs[i].value = b.add(acc, grad);
      ++n;
    }
    AUTOSP_LOG(1) << "accumulate_gradients: " << n << " gradient outputs accumulate in place";
    return Status::Ok();
  }
};

}  // namespace

std::unique_ptr<Pass> make_accumulate_gradients_pass() { return std::make_unique<AccumulateGradients>(); }

}  // namespace autosp::sp
