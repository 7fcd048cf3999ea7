// The NCCL communicator (comm_nccl.h). Collectives map one to one onto NCCL's; all_to_all is
// a group of one send and one receive per peer (itself included: NCCL copies those locally);
// send_recv is a group of the two. Zero-byte operations are skipped on every rank alike (all
// ranks pass the same count, and both sides of a transfer the same size).
#include "runtime/cuda/comm_nccl.h"

#include <nccl.h>

#include <cstdio>
#include <mutex>
#include <string>

#include "core/check.h"
#include "runtime/cuda/device_scope.h"

static_assert(NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0), "the NCCL communicator needs NCCL >= 2.18 (ncclCommSplit)");

namespace autosp::runtime {
namespace {

[[noreturn]] void fail(const char* call, const std::string& error, const char* file, int line) {
  throw CommError(std::string(call) + " failed: " + error + " (" + file + ":" + std::to_string(line) + ")");
}

void check_nccl(ncclResult_t r, ncclComm_t comm, const char* call, const char* file, int line) {
  if (r == ncclSuccess) return;
  std::string error = ncclGetErrorString(r);
  const char* last = ncclGetLastError(comm);  // comm may be null: the last error of the thread
  if (last && *last) error += ": " + std::string(last);
  fail(call, error, file, line);
}

void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) fail(call, cudaGetErrorString(e), file, line);
}

// NCCL_CHECK(comm, call) and COMM_CUDA_CHECK(call): a failure throws CommError (the caller
// aborts the job through its bootstrap communicator), unlike kernels' CUDA_CHECK, which
// aborts the process.
#define NCCL_CHECK(comm, call) check_nccl((call), (comm), #call, __FILE__, __LINE__)
#define COMM_CUDA_CHECK(call) check_cuda((call), #call, __FILE__, __LINE__)

// The work is on the stream already: waiting has nothing left to do (comm_nccl.h).
class Enqueued final : public Pending {
 public:
  void wait() override {}
};

class NcclComm final : public Communicator {
 public:
  // Takes ownership of comm (destroyed here if the constructor fails).
  NcclComm(ncclComm_t comm, cudaStream_t stream, int device) : comm_(comm), stream_(stream), device_(device) {
    DeviceScope on(device_);
    try {
      NCCL_CHECK(comm_, ncclCommUserRank(comm_, &rank_));
      NCCL_CHECK(comm_, ncclCommCount(comm_, &size_));
    } catch (...) {
      ncclCommDestroy(comm_);  // the query's error is the one worth reporting
      throw;
    }
  }

  ~NcclComm() override {
    // Failures are reported, not thrown: this runs while unwinding from errors too.
    DeviceScope on(device_);
    if (!aborted()) {
      const ncclResult_t r = ncclCommDestroy(comm_);
      if (r != ncclSuccess) std::fprintf(stderr, "ncclCommDestroy failed: %s\n", ncclGetErrorString(r));
    }
    if (barrier_word_) {
      const cudaError_t e = cudaFree(barrier_word_);
      if (e != cudaSuccess) std::fprintf(stderr, "NCCL communicator: cudaFree failed: %s\n", cudaGetErrorString(e));
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool stream_ordered() const override { return true; }

  void all_reduce_sum(float* data, int64_t n) override {
    check_live("all_reduce_sum", n);
    if (n == 0) return;
    DeviceScope on(device_);
    NCCL_CHECK(comm_, ncclAllReduce(data, data, size_t(n), ncclFloat32, ncclSum, comm_, stream_));
  }

  void all_gather(const void* send, void* recv, int64_t bytes) override {
    check_live("all_gather", bytes);
    if (bytes == 0) return;
    DeviceScope on(device_);
    NCCL_CHECK(comm_, ncclAllGather(send, recv, size_t(bytes), ncclUint8, comm_, stream_));
  }

  void reduce_scatter_sum(const float* send, float* recv, int64_t n) override {
    check_live("reduce_scatter_sum", n);
    if (n == 0) return;
    DeviceScope on(device_);
    NCCL_CHECK(comm_, ncclReduceScatter(send, recv, size_t(n), ncclFloat32, ncclSum, comm_, stream_));
  }

  void all_to_all(const void* send, void* recv, int64_t bytes) override {
    check_live("all_to_all", bytes);
    if (bytes == 0) return;
    DeviceScope on(device_);
    const auto* s = static_cast<const char*>(send);
    auto* r = static_cast<char*>(recv);
    grouped([&] {
      for (int peer = 0; peer < size_; ++peer) {
        NCCL_CHECK(comm_, ncclSend(s + peer * bytes, size_t(bytes), ncclUint8, peer, comm_, stream_));
        NCCL_CHECK(comm_, ncclRecv(r + peer * bytes, size_t(bytes), ncclUint8, peer, comm_, stream_));
      }
    });
  }

  void send_recv(const void* send, int64_t send_bytes, int dst, void* recv, int64_t recv_bytes, int src) override {
    check_live("send_recv", send_bytes);
    check_live("send_recv", recv_bytes);
    if (dst < 0 || dst >= size_ || src < 0 || src >= size_)
      throw CommError("send_recv: rank " + std::to_string(rank_) + " names dst " + std::to_string(dst) + ", src " +
                      std::to_string(src) + " outside [0, " + std::to_string(size_) + ")");
    if (send_bytes == 0 && recv_bytes == 0) return;
    DeviceScope on(device_);
    grouped([&] {
      if (send_bytes > 0) NCCL_CHECK(comm_, ncclSend(send, size_t(send_bytes), ncclUint8, dst, comm_, stream_));
      if (recv_bytes > 0) NCCL_CHECK(comm_, ncclRecv(recv, size_t(recv_bytes), ncclUint8, src, comm_, stream_));
    });
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    check_live("broadcast", bytes);
    if (root < 0 || root >= size_)
      throw CommError("broadcast: root " + std::to_string(root) + " outside [0, " + std::to_string(size_) + ")");
    if (bytes == 0) return;
    DeviceScope on(device_);
    NCCL_CHECK(comm_, ncclBroadcast(data, data, size_t(bytes), ncclUint8, root, comm_, stream_));
  }

  // An all-reduce completes on a rank only once every rank has joined it: waiting for it on
  // the host is the barrier. The word's value is irrelevant.
  void barrier() override {
    check_live("barrier", 0);
    DeviceScope on(device_);
    if (!barrier_word_) COMM_CUDA_CHECK(cudaMalloc(&barrier_word_, sizeof(float)));
    NCCL_CHECK(comm_, ncclAllReduce(barrier_word_, barrier_word_, 1, ncclFloat32, ncclSum, comm_, stream_));
    COMM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  std::unique_ptr<Pending> start_send_recv(const void* send, int64_t send_bytes, int dst, void* recv,
                                           int64_t recv_bytes, int src) override {
    send_recv(send, send_bytes, dst, recv, recv_bytes, src);
    return std::make_unique<Enqueued>();
  }
  std::unique_ptr<Pending> start_all_to_all(const void* send, void* recv, int64_t bytes) override {
    all_to_all(send, recv, bytes);
    return std::make_unique<Enqueued>();
  }
  std::unique_ptr<Pending> start_all_reduce_sum(float* data, int64_t n) override {
    all_reduce_sum(data, n);
    return std::make_unique<Enqueued>();
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    check_live("split", 0);
    DeviceScope on(device_);
    ncclComm_t child = nullptr;
    // A null config: the children inherit this communicator's (blocking) configuration.
    NCCL_CHECK(comm_, ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &child, nullptr));
    if (!child) return nullptr;
    return std::make_unique<NcclComm>(child, stream_, device_);
  }

  void abort(const std::string& why) override {
    {
      std::lock_guard lk(mu_);
      if (aborted_) return;
      aborted_ = true;
      why_ = why;
    }
    DeviceScope on(device_);
    // Reported, not thrown: abort() is called on the way out of a failure already.
    const ncclResult_t r = ncclCommAbort(comm_);
    if (r != ncclSuccess) std::fprintf(stderr, "ncclCommAbort failed: %s\n", ncclGetErrorString(r));
  }

 private:
  bool aborted() {
    std::lock_guard lk(mu_);
    return aborted_;
  }

  // Throws when this communicator was aborted or the count is negative.
  void check_live(const char* what, int64_t n) {
    {
      std::lock_guard lk(mu_);
      if (aborted_) throw CommError(std::string(what) + ": communicator aborted: " + why_);
    }
    if (n < 0) throw CommError(std::string(what) + ": negative count " + std::to_string(n));
  }

  // Runs enqueue() between ncclGroupStart and ncclGroupEnd. The group is closed even when
  // enqueue throws: NCCL's group state is per thread, and an open group would swallow this
  // thread's later calls.
  template <class F>
  void grouped(F&& enqueue) {
    NCCL_CHECK(comm_, ncclGroupStart());
    try {
      enqueue();
    } catch (...) {
      ncclGroupEnd();  // the first error is the one worth reporting
      throw;
    }
    NCCL_CHECK(comm_, ncclGroupEnd());
  }

  ncclComm_t comm_;
  cudaStream_t stream_;
  int device_;
  int rank_ = 0, size_ = 0;
  float* barrier_word_ = nullptr;  // device scratch of barrier(), allocated on first use
  std::mutex mu_;                  // guards aborted_ and why_: abort() may come from another thread
  bool aborted_ = false;
  std::string why_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, cudaStream_t stream) {
  AUTOSP_CHECK(!bootstrap.stream_ordered()) << "the NCCL bootstrap communicator must carry host buffers";
  ncclUniqueId id{};
  if (bootstrap.rank() == 0) NCCL_CHECK(nullptr, ncclGetUniqueId(&id));
  bootstrap.broadcast(&id, sizeof id, 0);
  int device = 0;
  COMM_CUDA_CHECK(cudaGetDevice(&device));
  ncclComm_t comm = nullptr;
  NCCL_CHECK(nullptr, ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()));
  return std::make_unique<NcclComm>(comm, stream, device);
}

}  // namespace autosp::runtime
