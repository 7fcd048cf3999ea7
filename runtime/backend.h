// Backend: where tensors live and how one instruction runs. The executor is written against
// this interface; the CPU backend (fp32, OpenBLAS, OpenMP) is here, the CUDA backend joins it.
#pragma once
#include <memory>
#include <span>

#include "core/tensor.h"
#include "ir/program.h"

namespace autosp::runtime {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual std::shared_ptr<Storage> allocate(size_t bytes) = 0;
  // Runs one instruction; ins/outs are views already shaped like the instruction's slots.
  virtual void launch(const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace autosp::runtime
