// Backend: where tensors live and how one instruction runs. The executor is written against
// this interface; the CPU backend (fp32 kernels, bf16 emulated; cpu_backend.cc) is here, the
// CUDA backend in runtime/cuda/cuda_backend.h.
//
// A device backend runs asynchronously: launch() enqueues on its compute stream and returns.
// Collectives run on a communication stream (the executor's communication thread issues
// them), and the executor orders the two streams through the comm_* calls below, keyed by
// the collective's instruction index. On the CPU every call is complete when it returns and
// those hooks do nothing.
#pragma once
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "core/tensor.h"
#include "ir/program.h"
#include "runtime/mem_ops.h"

namespace autosp::runtime {

class Mesh;

// One AdamW update's scalars (the formula is kernels/cpu/adamw.h's).
struct AdamWStep {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;
  float grad_scale;  // gradient clipping, folded in
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // The device's model ("NVIDIA H200"), for the cost model's preset; empty on the host.
  virtual std::string device_name() const { return ""; }
  virtual Device device() const { return Device::host; }
  virtual std::shared_ptr<Storage> allocate(size_t bytes) = 0;
  // Host memory the backend's copies reach fastest (pinned on a GPU): the host arena of
  // offloaded activations.
  virtual std::shared_ptr<Storage> allocate_host(size_t bytes) { return Storage::host(bytes); }
  // Called once per program before it runs: a backend allocates the workspace its kernels
  // need for the largest instruction here, so that steps allocate nothing.
  virtual void prepare(const ir::Program&) {}
  // Called at the start of every run of a program: what the step's inputs determine (the CUDA
  // attention's document tables) is computed again.
  virtual void begin_run() {}
  // Runs one instruction; ins/outs are views already shaped like the instruction's slots.
  virtual void launch(const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out) = 0;

  // How collectives issued on `stream` move bytes (packing chunks, staging).
  virtual MemOps& mem(ir::Stream) { return host_mem_ops(); }
  // Collective `index` (an instruction index) is handed over: the compute work issued so far
  // is what it reads (called on the compute thread, in program order).
  virtual void comm_enqueued(int) {}
  // On the thread that runs collective `index`, just before it: its stream waits for the
  // hand-over point; host_reads: the communicator touches the buffers from the host thread
  // (not stream-ordered), so the host must wait for them too.
  virtual void comm_begin(int, bool /*host_reads*/) {}
  // Just after collective `index` was issued (or ran, for a blocking communicator).
  virtual void comm_end(int) {}
  // The compute stream waits for collective `index` (and, by stream order, every collective
  // issued before it on the same stream).
  virtual void compute_waits(int) {}
  // Runs ring_attention or ring_attention_backward (with the mesh's communicators) on tensors
  // this backend allocated, called by the executor between comm_begin and comm_end in place
  // of the host implementation (collective_exec.h); false, having done nothing: the executor
  // runs the host one, which needs host tensors.
  virtual bool run_ring_attention(const Mesh&, const ir::Instr&, std::span<const Tensor> /*in*/,
                                  std::span<Tensor> /*out*/) {
    return false;
  }
  // The host waits for all work issued so far.
  virtual void synchronize() {}

  // Host <-> backend memory copies, complete on return (the runtime feeds inputs and reads
  // losses through these; a device backend orders them after the work issued before).
  virtual void upload(void* dst, const void* host, size_t bytes) { std::memcpy(dst, host, bytes); }
  virtual void download(void* host, const void* src, size_t bytes) { std::memcpy(host, src, bytes); }
  // dst[bytes] := 0 on this backend's memory, ordered after the work issued before.
  virtual void fill_zero(void* dst, size_t bytes) { std::memset(dst, 0, bytes); }

  // Optimizer arithmetic on f32 tensors this backend allocated. Σ over xs of Σ x², in a fixed
  // order (the gradient norm); and one AdamW step of p with gradient g and moments m, v.
  virtual double sum_squares(std::span<const Tensor> xs) = 0;
  virtual void adamw(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamWStep& a) = 0;
  // The most bytes this backend's allocations held at once (0: not tracked; the CPU reports
  // the process's peak RSS instead).
  virtual int64_t peak_bytes() const { return 0; }
};

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace autosp::runtime
