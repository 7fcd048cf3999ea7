// A stream-ordered communicator for several ranks (threads) on one GPU: NCCL's semantics
// (comm_nccl.h) for tests, since NCCL cannot put two ranks on one device. Every call only
// enqueues work on the stream given at construction and returns; results are ready in stream
// order, so code that forgets an event between its streams reads stale or half-written data,
// as it would with NCCL.
//
// A collective: each rank copies what it sends into a fresh staging buffer on its stream and
// records an event; the ranks swap (buffer, event) on the host; each rank's stream waits for
// its peers' events and copies (or sums, in rank order, with kernels/cuda's add) what it
// needs from their staging buffers; then each waits, in stream order, for every peer to have
// finished reading its own staging buffer before freeing it (cudaFreeAsync). Staging makes
// in-place calls (all_reduce_sum, broadcast) safe. barrier() waits on the host, like NCCL's.
// Every rank of a communicator must make the same calls in the same order, send_recv
// included (the ring and the schedule's shifts call it on every rank at once).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "runtime/comm.h"

namespace autosp::cuda_test {

// What the ranks of one communicator swap: FIFO mailboxes per (receiver, sender, kind).
class StreamCommHub {
 public:
  explicit StreamCommHub(int size) : size_(size) {}
  // The ranks' events live as long as the hub (every rank's communicator holds it): a rank
  // may finish its last call, and end, before a peer has waited on its `done` event.
  ~StreamCommHub() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  StreamCommHub(const StreamCommHub&) = delete;
  StreamCommHub& operator=(const StreamCommHub&) = delete;
  enum Kind { kReady, kDone, kHost };
  struct Post {
    const char* data = nullptr;
    int64_t bytes = 0;
    cudaEvent_t event = nullptr;
    int64_t a = 0, b = 0;  // host values (split's color and key)
  };
  int size() const { return size_; }

  void post(int to, int from, Kind kind, const Post& p) {
    {
      std::lock_guard<std::mutex> l(mu_);
      boxes_[{to, from, kind}].push_back(p);
    }
    cv_.notify_all();
  }
  Post take(int me, int from, Kind kind) {
    std::unique_lock<std::mutex> l(mu_);
    auto& q = boxes_[{me, from, kind}];
    cv_.wait(l, [&] { return !q.empty() || failed_; });
    if (q.empty()) throw runtime::CommError("stream comm: a rank failed while rank " + std::to_string(me) + " waited");
    Post p = q.front();
    q.pop_front();
    return p;
  }
  // Every rank's (a, b), in rank order: a host all-gather (and so a barrier).
  std::vector<std::pair<int64_t, int64_t>> gather_host(int me, int64_t a, int64_t b) {
    for (int r = 0; r < size_; ++r)
      if (r != me) post(r, me, kHost, {nullptr, 0, nullptr, a, b});
    std::vector<std::pair<int64_t, int64_t>> all(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) {
      if (r == me) {
        all[size_t(r)] = {a, b};
        continue;
      }
      const Post p = take(me, r, kHost);
      all[size_t(r)] = {p.a, p.b};
    }
    return all;
  }
  void keep(cudaEvent_t e) {
    std::lock_guard<std::mutex> l(mu_);
    events_.push_back(e);
  }
  // A rank's communicator ended by an exception: its peers' waits throw instead of hanging.
  void fail() {
    {
      std::lock_guard<std::mutex> l(mu_);
      failed_ = true;
    }
    cv_.notify_all();
  }
  // The hub of the group `color` made by this hub's split number `seq`; its first caller
  // creates it.
  std::shared_ptr<StreamCommHub> child(int64_t seq, int64_t color, int size) {
    std::lock_guard<std::mutex> l(mu_);
    auto& c = children_[{seq, color}];
    if (!c) c = std::make_shared<StreamCommHub>(size);
    return c;
  }

 private:
  int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::tuple<int, int, int>, std::deque<Post>> boxes_;
  std::map<std::pair<int64_t, int64_t>, std::shared_ptr<StreamCommHub>> children_;
  std::vector<cudaEvent_t> events_;
  bool failed_ = false;
};

class StreamComm final : public runtime::Communicator {
 public:
  StreamComm(std::shared_ptr<StreamCommHub> hub, int rank, cudaStream_t stream)
      : hub_(std::move(hub)), rank_(rank), stream_(stream) {}
  ~StreamComm() override {
    cudaStreamSynchronize(stream_);
    if (std::uncaught_exceptions() > 0) hub_->fail();
  }
  int rank() const override { return rank_; }
  int size() const override { return hub_->size(); }
  bool stream_ordered() const override { return true; }

  void all_reduce_sum(float* data, int64_t n) override {
    swap(data, 4 * n, [&](const std::vector<const char*>& from) { sum_into(data, from, 0, n); });
  }
  void reduce_scatter_sum(const float* send, float* recv, int64_t n) override {
    swap(send, 4 * n * size(), [&](const std::vector<const char*>& from) { sum_into(recv, from, rank_ * n, n); });
  }
  void all_gather(const void* send, void* recv, int64_t bytes) override {
    swap(send, bytes, [&](const std::vector<const char*>& from) {
      for (int r = 0; r < size(); ++r) copy(static_cast<char*>(recv) + r * bytes, from[size_t(r)], bytes);
    });
  }
  void all_to_all(const void* send, void* recv, int64_t bytes) override {
    swap(send, bytes * size(), [&](const std::vector<const char*>& from) {
      for (int r = 0; r < size(); ++r) copy(static_cast<char*>(recv) + r * bytes, from[size_t(r)] + rank_ * bytes, bytes);
    });
  }
  void send_recv(const void* send, int64_t send_bytes, int dst, void* recv, int64_t recv_bytes, int src) override {
    if (dst < 0 || dst >= size() || src < 0 || src >= size())
      throw runtime::CommError("stream comm: send_recv names a rank outside the group");
    swap(send, send_bytes, [&](const std::vector<const char*>& from) { copy(recv, from[size_t(src)], recv_bytes); },
         src, recv_bytes);
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    swap(data, bytes, [&](const std::vector<const char*>& from) {
      if (rank_ != root) copy(data, from[size_t(root)], bytes);
    });
  }
  void barrier() override {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    hub_->gather_host(rank_, 0, 0);
  }

  std::unique_ptr<runtime::Pending> start_send_recv(const void* send, int64_t send_bytes, int dst, void* recv,
                                                    int64_t recv_bytes, int src) override {
    send_recv(send, send_bytes, dst, recv, recv_bytes, src);
    return enqueued();
  }
  std::unique_ptr<runtime::Pending> start_all_to_all(const void* send, void* recv, int64_t bytes) override {
    all_to_all(send, recv, bytes);
    return enqueued();
  }
  std::unique_ptr<runtime::Pending> start_all_reduce_sum(float* data, int64_t n) override {
    all_reduce_sum(data, n);
    return enqueued();
  }

  std::unique_ptr<runtime::Communicator> split(int color, int key) override {
    const auto all = hub_->gather_host(rank_, color, key);
    const int64_t seq = splits_++;
    if (color < 0) return nullptr;
    std::vector<std::pair<int64_t, int>> members;  // (key, rank) of my color
    for (int r = 0; r < size(); ++r)
      if (all[size_t(r)].first == color) members.push_back({all[size_t(r)].second, r});
    std::sort(members.begin(), members.end());
    int sub = 0;
    while (members[size_t(sub)].second != rank_) ++sub;
    return std::make_unique<StreamComm>(hub_->child(seq, color, int(members.size())), sub, stream_);
  }
  void abort(const std::string&) override { hub_->fail(); }

 private:
  static std::unique_ptr<runtime::Pending> enqueued() {
    struct Enqueued final : runtime::Pending {
      void wait() override {}
    };
    return std::make_unique<Enqueued>();
  }

  // A fresh event per use: a peer may still be about to wait on an earlier one.
  cudaEvent_t recorded() {
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    hub_->keep(e);
    CUDA_CHECK(cudaEventRecord(e, stream_));
    return e;
  }

  void copy(void* dst, const void* src, int64_t bytes) {
    if (bytes > 0) CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(bytes), cudaMemcpyDeviceToDevice, stream_));
  }
  // dst[n] := Σ over ranks, in rank order, of from[r] at float offset `at`.
  void sum_into(float* dst, const std::vector<const char*>& from, int64_t at, int64_t n) {
    if (n == 0) return;
    copy(dst, reinterpret_cast<const float*>(from[0]) + at, 4 * n);
    for (size_t r = 1; r < from.size(); ++r)
      kernels::cuda::binary<float>(kernels::cuda::BinaryOp::add, dst, reinterpret_cast<const float*>(from[r]) + at,
                                   dst, n, n, stream_);
  }

  // The collective skeleton (see the top): stages `bytes` of `send`, swaps the staging
  // buffers, runs read(every rank's staging buffer) on this stream, and waits for the peers'
  // reads before freeing. expect_from >= 0: that rank's buffer must hold expect_bytes.
  void swap(const void* send, int64_t bytes, const std::function<void(const std::vector<const char*>&)>& read,
            int expect_from = -1, int64_t expect_bytes = 0) {
    if (bytes < 0) throw runtime::CommError("stream comm: negative count");
    void* staged = nullptr;
    CUDA_CHECK(cudaMallocAsync(&staged, size_t(std::max<int64_t>(bytes, 16)), stream_));
    copy(staged, send, bytes);
    const cudaEvent_t ready = recorded();
    const int P = size();
    for (int r = 0; r < P; ++r)
      if (r != rank_) hub_->post(r, rank_, StreamCommHub::kReady, {static_cast<const char*>(staged), bytes, ready});
    std::vector<const char*> from(static_cast<size_t>(P));
    from[size_t(rank_)] = static_cast<const char*>(staged);
    for (int r = 0; r < P; ++r) {
      if (r == rank_) continue;
      const StreamCommHub::Post p = hub_->take(rank_, r, StreamCommHub::kReady);
      if (r == expect_from && p.bytes != expect_bytes)
        throw runtime::CommError("stream comm: expected " + std::to_string(expect_bytes) + " bytes from rank " +
                                 std::to_string(r) + ", it sends " + std::to_string(p.bytes));
      CUDA_CHECK(cudaStreamWaitEvent(stream_, p.event, 0));
      from[size_t(r)] = p.data;
    }
    if (expect_from == rank_ && bytes != expect_bytes)
      throw runtime::CommError("stream comm: a rank sending to itself must receive what it sends");
    read(from);
    const cudaEvent_t done = recorded();
    for (int r = 0; r < P; ++r)
      if (r != rank_) hub_->post(r, rank_, StreamCommHub::kDone, {nullptr, 0, done});
    for (int r = 0; r < P; ++r)
      if (r != rank_) CUDA_CHECK(cudaStreamWaitEvent(stream_, hub_->take(rank_, r, StreamCommHub::kDone).event, 0));
    CUDA_CHECK(cudaFreeAsync(staged, stream_));
  }

  std::shared_ptr<StreamCommHub> hub_;
  int rank_;
  cudaStream_t stream_;
  int64_t splits_ = 0;
};

}  // namespace autosp::cuda_test
