#include "runtime/executor.h"

#include <algorithm>
#include <chrono>

#include "runtime/collective_exec.h"

namespace autosp::runtime {

using ir::Slot;
using clock_type = std::chrono::steady_clock;

Executor::Executor(ir::Program program, Backend& backend, const Mesh* mesh, std::shared_ptr<Storage> arena)
    : program_(std::move(program)), backend_(backend), mesh_(mesh), arena_(std::move(arena)),
      external_(program_.slots.size()) {
  for (const ir::Instr& ins : program_.instrs)
    AUTOSP_CHECK(mesh_ || !is_communication(ins.op) || ir::is_transfer(ins.op))
        << "a program with " << ir::op_name(ins.op) << " needs a mesh";
  if (!arena_) arena_ = backend_.allocate(size_t(program_.arena_bytes));
  if (program_.host_bytes > 0) host_arena_ = backend_.allocate_host(size_t(program_.host_bytes));
  AUTOSP_CHECK(arena_->bytes() >= size_t(program_.arena_bytes))
      << "shared arena of " << arena_->bytes() << " bytes for a program planning " << program_.arena_bytes;
  backend_.prepare(program_);
  // The k-th collective on the communication stream completes k-th (FIFO): an instruction
  // waits until as many have completed as the latest one it depends on needs.
  const int n = int(program_.instrs.size());
  done_before_.assign(size_t(n) + 1, 0);
  for (int i = 0; i < n; ++i) {
    const ir::Instr& ins = program_.instrs[i];
    if (ins.stream != ir::Stream::comm) continue;
    ++comm_count_;
    comm_instr_.push_back(i);
    const int w = std::clamp(ins.wait_before, i + 1, n);
    done_before_[w] = std::max(done_before_[w], comm_count_);
  }
  done_before_[n] = comm_count_;
  if (comm_count_ > 0) comm_thread_ = std::thread([this] { comm_loop(); });
}

Executor::~Executor() {
  if (!comm_thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  comm_thread_.join();
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

void Executor::write(const std::string& name, const void* host, size_t bytes) {
  Tensor& t = tensor(name);
  AUTOSP_CHECK(bytes == t.nbytes()) << "writing " << bytes << " bytes into " << name << " of " << t.nbytes();
  backend_.upload(t.raw(), host, bytes);
}

void Executor::read(const std::string& name, void* host, size_t bytes) {
  Tensor& t = tensor(name);
  AUTOSP_CHECK(bytes == t.nbytes()) << "reading " << bytes << " bytes from " << name << " of " << t.nbytes();
  backend_.download(host, t.raw(), bytes);
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
    case Slot::Kind::host: return Tensor(host_arena_, size_t(slot.offset), slot.type.dtype, slot.type.shape);
    case Slot::Kind::alias: return view(slot.alias_of).view(size_t(slot.alias_offset), slot.type.dtype, slot.type.shape);
  }
  return {};
}

void Executor::record(int index, clock_type::time_point t0, clock_type::time_point t1) {
  const ir::Instr& ins = program_.instrs[index];
  op_seconds_[size_t(ins.op)] += std::chrono::duration<double>(t1 - t0).count();
  if (!tracing_) return;
  std::lock_guard<std::mutex> l(trace_mu_);
  trace_.push_back({ins.label.empty() ? std::string(ir::op_name(ins.op)) : ins.label, ins.stream,
                    std::chrono::duration<double, std::micro>(t0 - run_start_).count(),
                    std::chrono::duration<double, std::micro>(t1 - t0).count()});
}

void Executor::execute(int index) {
  const ir::Instr& ins = program_.instrs[index];
  std::vector<Tensor> in, out;
  for (int s : ins.in) in.push_back(view(s));
  for (int s : ins.out) out.push_back(view(s));
  int64_t top = 0;
  for (const auto* group : {&ins.in, &ins.out})
    for (int s : *group) {
      const Slot& slot = program_.slots[s];
      const Slot& base = slot.kind == Slot::Kind::alias ? program_.slots[slot.alias_of] : slot;
      if (base.kind != Slot::Kind::arena) continue;
      const int64_t at = base.offset + (slot.kind == Slot::Kind::alias ? slot.alias_offset : 0);
      top = std::max(top, at + slot.type.shape.numel() * int64_t(dtype_size(slot.type.dtype)));
    }
  for (int64_t seen = high_water_.load(); top > seen && !high_water_.compare_exchange_weak(seen, top);) {
  }
  const auto t0 = clock_type::now();
  if (is_communication(ins.op)) {
    if (ins.stream == ir::Stream::compute) backend_.comm_enqueued(index);
    MemOps& mem = backend_.mem(ins.stream);
    // A transfer is a copy through the backend's MemOps: stream-ordered on a device, done by
    // the host thread otherwise.
    backend_.comm_begin(index, ir::is_transfer(ins.op) ? !mem.device() : !mesh_->stream_ordered());
    const bool ring = ins.op == ir::Op::ring_attention || ins.op == ir::Op::ring_attention_backward;
    if (ir::is_transfer(ins.op))
      mem.copy(out[0].raw(), in[0].raw(), in[0].nbytes());
    else if (!ring || !backend_.run_ring_attention(*mesh_, ins, in, out))
      run_communication(*mesh_, ins, in, out, mem);
    backend_.comm_end(index);
    if (ins.stream == ir::Stream::compute) backend_.compute_waits(index);
  } else {
    backend_.launch(ins, in, out);
  }
  const auto t1 = clock_type::now();
  record(index, t0, t1);
  // A collective the calling thread runs itself (no overlap) is exposed communication, except
  // ring attention, which is attention compute with its exchange overlapped inside.
  if (ins.stream == ir::Stream::compute && is_communication(ins.op) && ins.op != ir::Op::ring_attention &&
      ins.op != ir::Op::ring_attention_backward)
    exposed_comm_s_ += std::chrono::duration<double>(t1 - t0).count();
}

void Executor::comm_loop() {
  for (;;) {
    int index;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      index = queue_.front();
      queue_.pop_front();
    }
    try {
      execute(index);
    } catch (...) {
      std::lock_guard<std::mutex> l(mu_);
      comm_error_ = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      ++completed_;
    }
    cv_.notify_all();
  }
}

void Executor::wait_for(int64_t completed) {
  {
    std::unique_lock<std::mutex> l(mu_);
    if (completed_ < completed || comm_error_) {
      const auto t0 = clock_type::now();
      cv_.wait(l, [&] { return completed_ >= completed || comm_error_; });
      const auto t1 = clock_type::now();
      exposed_comm_s_ += std::chrono::duration<double>(t1 - t0).count();
      if (tracing_) {
        std::lock_guard<std::mutex> tl(trace_mu_);
        trace_.push_back({"wait", ir::Stream::compute,
                          std::chrono::duration<double, std::micro>(t0 - run_start_).count(),
                          std::chrono::duration<double, std::micro>(t1 - t0).count()});
      }
      if (comm_error_) std::rethrow_exception(comm_error_);
    }
  }
  backend_.compute_waits(comm_instr_[size_t(completed - 1)]);
}

Status Executor::run() {
  for (int s : program_.inputs)
    if (!external_[s].defined()) return FailedPrecondition("input " + program_.slots[s].name + " is not bound");
  for (int s : program_.params)
    if (!external_[s].defined()) return FailedPrecondition("parameter " + program_.slots[s].name + " is not bound");
  // Allocate every unbound output now: the communication thread must only read external_.
  for (int s : program_.outputs) external(s);
  exposed_comm_s_ = 0;
  backend_.begin_run();
  run_start_ = clock_type::now();
  if (tracing_) trace_.clear();
  {
    std::lock_guard<std::mutex> l(mu_);
    completed_ = 0;
  }
  const int n = int(program_.instrs.size());
  int64_t handed = 0;  // collectives given to the communication thread so far
  for (int i = 0; i < n; ++i) {
    if (done_before_[i] > 0) wait_for(done_before_[i]);
    const ir::Instr& ins = program_.instrs[i];
    if (ins.stream == ir::Stream::comm) {
      backend_.comm_enqueued(i);
      {
        std::lock_guard<std::mutex> l(mu_);
        queue_.push_back(i);
      }
      ++handed;
      cv_.notify_all();
    } else {
      // A stream-ordered communicator (NCCL) executes calls in the order they were enqueued
      // on its stream, and every rank must enqueue them in the same order. Ring attention
      // issues its exchanges from this thread: let the communication thread issue everything
      // handed to it first (for NCCL "completed" means issued, so this costs no overlap).
      const bool ring = ins.op == ir::Op::ring_attention || ins.op == ir::Op::ring_attention_backward;
      if (ring && mesh_ && mesh_->stream_ordered() && handed > 0) wait_for(handed);
      execute(i);
    }
  }
  if (done_before_[n] > 0) wait_for(done_before_[n]);
  backend_.synchronize();
  return Status::Ok();
}

}  // namespace autosp::runtime
