// Executor: runs a Program on a Backend. The arena is allocated once at construction;
// arguments and outputs are bound by name to tensors the caller owns (parameters, gradient
// buffers, batch inputs). Outputs left unbound are allocated on first run and kept.
//
// Two streams (sp_compiler/schedule.h): the calling thread runs compute instructions in
// order; collectives the schedule put on the communication stream are handed, in order, to
// one communication thread, and the calling thread waits for each before the instruction
// named by its wait_before. Time the calling thread spends waiting (or running collectives
// itself, without overlap) is the step's exposed communication.
//
// On a device backend both threads only enqueue work: the backend's comm_* hooks order the
// compute and communication streams with events, the host waits for a collective's issue
// (not its completion) before the instruction that needs it, and run() ends by waiting for
// the device. Exposed communication is then the host's waiting, a lower bound.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "ir/program.h"
#include "runtime/backend.h"
#include "runtime/mesh.h"

namespace autosp::runtime {

// One instruction's span on one stream, in microseconds from the start of the run.
struct TraceEvent {
  std::string name;
  ir::Stream stream;
  double start_us, dur_us;
};

class Executor {
 public:
  // mesh: the communicators for the program's collectives (null for a single-rank program).
  // arena: storage to plan into, shared by executors that never run at once (training and
  // eval steps); null allocates the program's own. It must hold the program's arena_bytes.
  Executor(ir::Program program, Backend& backend, const Mesh* mesh = nullptr,
           std::shared_ptr<Storage> arena = nullptr);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Binds an argument or output slot; the tensor's dtype and shape must match the slot.
  Status bind(const std::string& name, Tensor t);
  bool has(const std::string& name) const { return program_.find_external(name) >= 0; }
  // The tensor bound to (or allocated for) an external slot. On a device backend its bytes
  // are device memory: use write()/read() from the host.
  Tensor& tensor(const std::string& name);
  // Host bytes into / out of an external tensor (complete on return); bytes must equal its size.
  void write(const std::string& name, const void* host, size_t bytes);
  void read(const std::string& name, void* host, size_t bytes);
  // Fails when an argument is unbound. A communication failure throws CommError.
  Status run();

  const ir::Program& program() const { return program_; }
  // Wall time spent in each op kind over all runs so far (the --profile table).
  const std::array<double, ir::kNumOps>& op_seconds() const { return op_seconds_; }
  // Exposed communication of the last run, in seconds.
  double exposed_comm_seconds() const { return exposed_comm_s_; }
  // Record every instruction's span during the next runs (trace()).
  void set_tracing(bool on) { tracing_ = on; }
  const std::vector<TraceEvent>& trace() const { return trace_; }
  // The highest arena byte any instruction has read or written so far: the measured
  // counterpart of the memory plan's arena_bytes.
  int64_t arena_high_water() const { return high_water_.load(); }

 private:
  Tensor view(int slot);
  Tensor& external(int slot);
  void execute(int index);  // one instruction, on the calling thread
  void comm_loop();
  void wait_for(int64_t completed);
  void record(int index, std::chrono::steady_clock::time_point t0, std::chrono::steady_clock::time_point t1);

  ir::Program program_;
  Backend& backend_;
  const Mesh* mesh_;
  std::shared_ptr<Storage> arena_;
  std::shared_ptr<Storage> host_arena_;  // offloaded activations (Program::host_bytes)
  std::vector<Tensor> external_;  // by slot index; undefined for arena/alias slots
  std::array<double, ir::kNumOps> op_seconds_{};
  std::atomic<int64_t> high_water_{0};

  // Communication stream.
  std::vector<int64_t> done_before_;  // per instruction: collectives that must have completed first
  std::vector<int> comm_instr_;       // the instruction index of the k-th collective on the comm stream
  int64_t comm_count_ = 0;
  std::thread comm_thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<int> queue_;
  int64_t completed_ = 0;
  bool stop_ = false;
  std::exception_ptr comm_error_;

  double exposed_comm_s_ = 0;
  bool tracing_ = false;
  std::chrono::steady_clock::time_point run_start_;
  std::mutex trace_mu_;
  std::vector<TraceEvent> trace_;
};

}  // namespace autosp::runtime
