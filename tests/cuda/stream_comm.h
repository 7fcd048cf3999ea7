// A stream-ordered communicator for several ranks (threads) on one GPU, for testing code written
// for NCCL (comm_nccl.h), which cannot put two ranks on one device. Like NCCL it only enqueues:
// send_recv orders a device-to-device copy on the caller's stream after the sender's stream
// reached the call (an event the ranks exchange on the host), and orders the caller's stream
// after the receiver's copy of its send buffer, so a later write to that buffer in the caller's
// stream order cannot overtake the copy. Nothing waits on the host for the device; results are
// ready in stream order only, so a caller that forgets an event between streams reads stale or
// half-copied data, as it would with NCCL.
//
// Only send_recv (and start_send_recv, whose wait() does nothing) are provided: what ring
// attention uses. Every rank must make the same sequence of calls.
#pragma once
#include <cuda_runtime.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "kernels/cuda/check.h"
#include "runtime/comm.h"

namespace autosp::cuda_test {

// The ranks' mailboxes, shared by the P communicators.
class StreamCommHub {
 public:
  explicit StreamCommHub(int size) : boxes_(static_cast<size_t>(size)) {}
  struct Post {
    const void* data = nullptr;
    int64_t bytes = 0;
    cudaEvent_t event = nullptr;
  };
  void post(int to, bool done, const Post& p) {
    {
      std::lock_guard<std::mutex> l(mu_);
      (done ? boxes_[size_t(to)].done : boxes_[size_t(to)].ready).push_back(p);
    }
    cv_.notify_all();
  }
  Post take(int me, bool done) {
    std::unique_lock<std::mutex> l(mu_);
    auto& q = done ? boxes_[size_t(me)].done : boxes_[size_t(me)].ready;
    cv_.wait(l, [&] { return !q.empty(); });
    Post p = q.front();
    q.pop_front();
    return p;
  }
  int size() const { return int(boxes_.size()); }

 private:
  struct Box {
    std::deque<Post> ready, done;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Box> boxes_;
};

class StreamComm final : public runtime::Communicator {
 public:
  StreamComm(StreamCommHub& hub, int rank, cudaStream_t stream) : hub_(hub), rank_(rank), stream_(stream) {}
  ~StreamComm() override {
    cudaStreamSynchronize(stream_);  // events still referenced by peers' streams stay valid until here
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  int rank() const override { return rank_; }
  int size() const override { return hub_.size(); }
  bool stream_ordered() const override { return true; }

  void send_recv(const void* send, int64_t send_bytes, int dst, void* recv, int64_t recv_bytes, int src) override {
    // 1. Our send buffer is ready (and our receive buffer free) once our stream gets here.
    cudaEvent_t ready = event();
    CUDA_CHECK(cudaEventRecord(ready, stream_));
    hub_.post(dst, false, {send, send_bytes, ready});
    // 2. Copy the source's block once its stream got to its call.
    const StreamCommHub::Post in = hub_.take(rank_, false);
    if (in.bytes != recv_bytes) throw runtime::CommError("stream comm: receiving " + std::to_string(recv_bytes) +
                                                          " bytes, the sender sends " + std::to_string(in.bytes));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, in.event, 0));
    if (recv_bytes > 0) CUDA_CHECK(cudaMemcpyAsync(recv, in.data, size_t(recv_bytes), cudaMemcpyDeviceToDevice, stream_));
    cudaEvent_t copied = event();
    CUDA_CHECK(cudaEventRecord(copied, stream_));
    hub_.post(src, true, {nullptr, 0, copied});
    // 3. Our send buffer is free again, in our stream order, once the receiver copied it.
    CUDA_CHECK(cudaStreamWaitEvent(stream_, hub_.take(rank_, true).event, 0));
  }
  std::unique_ptr<runtime::Pending> start_send_recv(const void* send, int64_t send_bytes, int dst, void* recv,
                                                    int64_t recv_bytes, int src) override {
    send_recv(send, send_bytes, dst, recv, recv_bytes, src);
    struct Enqueued final : runtime::Pending {
      void wait() override {}
    };
    return std::make_unique<Enqueued>();
  }

  void all_reduce_sum(float*, int64_t) override { unsupported(); }
  void all_gather(const void*, void*, int64_t) override { unsupported(); }
  void reduce_scatter_sum(const float*, float*, int64_t) override { unsupported(); }
  void all_to_all(const void*, void*, int64_t) override { unsupported(); }
  void broadcast(void*, int64_t, int) override { unsupported(); }
  void barrier() override { unsupported(); }
  std::unique_ptr<runtime::Pending> start_all_to_all(const void*, void*, int64_t) override { unsupported(); }
  std::unique_ptr<runtime::Pending> start_all_reduce_sum(float*, int64_t) override { unsupported(); }
  std::unique_ptr<runtime::Communicator> split(int, int) override { unsupported(); }
  void abort(const std::string&) override {}

 private:
  [[noreturn]] static void unsupported() { throw std::logic_error("stream comm: only send_recv is provided"); }
  // A fresh event per use: a peer may still be waiting on an earlier one. Freed at the end.
  cudaEvent_t event() {
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    events_.push_back(e);
    return e;
  }
  StreamCommHub& hub_;
  int rank_;
  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;
};

}  // namespace autosp::cuda_test
