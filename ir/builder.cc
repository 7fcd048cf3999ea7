#include "ir/builder.h"

#include <sstream>

#include "ir/registry.h"

namespace autosp::ir {

ValueId Builder::input(const std::string& name, DType dt, Shape shape) {
  return g_.add_arg(name, {dt, std::move(shape)}, ArgRole::input);
}

ValueId Builder::param(const std::string& name, Shape shape, Init init) {
  AUTOSP_CHECK(g_.find_arg(name) == kNoValue) << "duplicate parameter name " << name;
  return g_.add_arg(name, {DType::f32, std::move(shape)}, ArgRole::param, init);
}

std::vector<ValueId> Builder::op(Op o, std::vector<ValueId> inputs, Attrs attrs) {
  auto r = g_.add_node(o, inputs, std::move(attrs));
  if (!r.ok()) {
    std::ostringstream os;
    for (size_t i = 0; i < inputs.size(); ++i)
      os << (i ? ", " : "") << (inputs[i] >= 0 && inputs[i] < ValueId(g_.values.size()) ? g_.type(inputs[i]).str()
                                                                                          : "?");
    AUTOSP_CHECK(false) << "building " << op_name(o) << "(" << os.str() << "): " << r.status().message();
  }
  return r.value();
}

Builder::AttentionOut Builder::attention(ValueId q, ValueId k, ValueId v, std::optional<ValueId> segments,
                                         bool causal, float scale) {
  std::vector<ValueId> in{q, k, v};
  if (segments) in.push_back(*segments);
  auto out = op(Op::attention, in, AttentionAttrs{causal, scale});
  return {out[0], out[1]};
}

Builder::LossOut Builder::cross_entropy(ValueId h, ValueId w, ValueId targets, int64_t ignore_index,
                                        int64_t chunk) {
  auto out = op(Op::cross_entropy, {h, w, targets}, CrossEntropyAttrs{ignore_index, chunk});
  return {out[0], out[1], out[2]};
}

}  // namespace autosp::ir
