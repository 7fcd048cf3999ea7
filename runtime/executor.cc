#include "runtime/executor.h"

#include <chrono>

#include "runtime/collective_exec.h"

namespace autosp::runtime {

using ir::Slot;

Executor::Executor(ir::Program program, Backend& backend, const Mesh* mesh)
    : program_(std::move(program)), backend_(backend), mesh_(mesh), external_(program_.slots.size()) {
  for (const ir::Instr& ins : program_.instrs)
    AUTOSP_CHECK(mesh_ || !is_communication(ins.op)) << "a program with " << ir::op_name(ins.op) << " needs a mesh";
  arena_ = backend_.allocate(size_t(program_.arena_bytes));
}

Status Executor::bind(const std::string& name, Tensor t) {
  int s = program_.find_external(name);
  if (s < 0) return InvalidArgument("no argument or output named " + name);
  const ir::TensorType& want = program_.slots[s].type;
  if (t.dtype() != want.dtype || t.shape() != want.shape)
    return InvalidArgument("binding " + name + ": expected " + want.str() + ", got " +
                           std::string(dtype_name(t.dtype())) + t.shape().str());
  external_[s] = std::move(t);
  return Status::Ok();
}

Tensor& Executor::tensor(const std::string& name) {
  int s = program_.find_external(name);
  AUTOSP_CHECK(s >= 0) << "no argument or output named " << name;
  return external(s);
}

Tensor& Executor::external(int s) {
  if (!external_[s].defined()) {
    const ir::TensorType& t = program_.slots[s].type;
    external_[s] = Tensor(backend_.allocate(size_t(t.shape.numel()) * dtype_size(t.dtype)), 0, t.dtype, t.shape);
  }
  return external_[s];
}

Tensor Executor::view(int s) {
  const Slot& slot = program_.slots[s];
  switch (slot.kind) {
    case Slot::Kind::external: return external(s);
    case Slot::Kind::arena: return Tensor(arena_, size_t(slot.offset), slot.type.dtype, slot.type.shape);
    case Slot::Kind::alias: return view(slot.alias_of).view(size_t(slot.alias_offset), slot.type.dtype, slot.type.shape);
  }
  return {};
}

Status Executor::run() {
  for (int s : program_.inputs)
    if (!external_[s].defined()) return FailedPrecondition("input " + program_.slots[s].name + " is not bound");
  for (int s : program_.params)
    if (!external_[s].defined()) return FailedPrecondition("parameter " + program_.slots[s].name + " is not bound");
  std::vector<Tensor> in, out;
  for (const ir::Instr& ins : program_.instrs) {
    in.clear();
    out.clear();
    for (int s : ins.in) in.push_back(view(s));
    for (int s : ins.out) out.push_back(view(s));
    const auto t0 = std::chrono::steady_clock::now();
    if (is_communication(ins.op))
      run_communication(*mesh_, ins, in, out);
    else
      backend_.launch(ins, in, out);
    op_seconds_[size_t(ins.op)] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return Status::Ok();
}

}  // namespace autosp::runtime
