// Executor: runs a Program on a Backend. The arena is allocated once at construction;
// arguments and outputs are bound by name to tensors the caller owns (parameters, gradient
// buffers, batch inputs). Outputs left unbound are allocated on first run and kept.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "ir/program.h"
#include "runtime/backend.h"
#include "runtime/mesh.h"

namespace autosp::runtime {

class Executor {
 public:
  // mesh: the communicators for the program's collectives (null for a single-rank program).
  Executor(ir::Program program, Backend& backend, const Mesh* mesh = nullptr);

  // Binds an argument or output slot; the tensor's dtype and shape must match the slot.
  Status bind(const std::string& name, Tensor t);
  bool has(const std::string& name) const { return program_.find_external(name) >= 0; }
  // The tensor bound to (or allocated for) an external slot.
  Tensor& tensor(const std::string& name);
  // Fails when an argument is unbound.
  Status run();

  const ir::Program& program() const { return program_; }
  // Wall time spent in each op kind over all runs so far (the --profile table).
  const std::array<double, ir::kNumOps>& op_seconds() const { return op_seconds_; }
  int64_t arena_bytes() const { return program_.arena_bytes; }

 private:
  Tensor view(int slot);
  Tensor& external(int slot);

  ir::Program program_;
  Backend& backend_;
  const Mesh* mesh_;
  std::shared_ptr<Storage> arena_;
  std::vector<Tensor> external_;  // by slot index; undefined for arena/alias slots
  std::array<double, ir::kNumOps> op_seconds_{};
};

}  // namespace autosp::runtime
