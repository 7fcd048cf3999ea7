// A Communicator that adds a fixed latency to every collective, for proving that overlap is
// real: blocking calls sleep first; asynchronous ones (start_*) complete no earlier than the
// latency after they started, so the latency runs concurrently with whatever the caller does
// before wait(). Sub-groups from split() are delayed too.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "runtime/comm.h"

namespace autosp::testing {

class DelayComm final : public runtime::Communicator {
 public:
  DelayComm(std::unique_ptr<runtime::Communicator> owned, runtime::Communicator* inner,
            std::chrono::microseconds delay, std::shared_ptr<std::atomic<int64_t>> calls)
      : owned_(std::move(owned)), inner_(inner ? inner : owned_.get()), delay_(delay), calls_(std::move(calls)) {}
  DelayComm(runtime::Communicator& inner, std::chrono::microseconds delay)
      : DelayComm(nullptr, &inner, delay, std::make_shared<std::atomic<int64_t>>(0)) {}

  int64_t calls() const { return *calls_; }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  void all_reduce_sum(float* d, int64_t n) override { wait(), inner_->all_reduce_sum(d, n); }
  void all_gather(const void* s, void* r, int64_t b) override { wait(), inner_->all_gather(s, r, b); }
  void reduce_scatter_sum(const float* s, float* r, int64_t n) override { wait(), inner_->reduce_scatter_sum(s, r, n); }
  void all_to_all(const void* s, void* r, int64_t b) override { wait(), inner_->all_to_all(s, r, b); }
  void send_recv(const void* s, int64_t sb, int dst, void* r, int64_t rb, int src) override {
    wait(), inner_->send_recv(s, sb, dst, r, rb, src);
  }
  void broadcast(void* d, int64_t b, int root) override { inner_->broadcast(d, b, root); }
  void barrier() override { inner_->barrier(); }
  std::unique_ptr<runtime::Pending> start_send_recv(const void* s, int64_t sb, int dst, void* r, int64_t rb,
                                                    int src) override {
    return later(inner_->start_send_recv(s, sb, dst, r, rb, src));
  }
  std::unique_ptr<runtime::Pending> start_all_to_all(const void* s, void* r, int64_t b) override {
    return later(inner_->start_all_to_all(s, r, b));
  }
  std::unique_ptr<runtime::Pending> start_all_reduce_sum(float* d, int64_t n) override {
    return later(inner_->start_all_reduce_sum(d, n));
  }
  std::unique_ptr<runtime::Communicator> split(int color, int key) override {
    return std::make_unique<DelayComm>(inner_->split(color, key), nullptr, delay_, calls_);
  }
  void abort(const std::string& why) override { inner_->abort(why); }

 private:
  // Completes `p`, then sleeps out whatever is left of the latency since the start.
  struct Delayed final : runtime::Pending {
    std::unique_ptr<runtime::Pending> inner;
    std::chrono::steady_clock::time_point ready;
    void wait() override {
      inner->wait();
      std::this_thread::sleep_until(ready);
    }
  };
  std::unique_ptr<runtime::Pending> later(std::unique_ptr<runtime::Pending> p) {
    ++*calls_;
    auto d = std::make_unique<Delayed>();
    d->inner = std::move(p);
    d->ready = std::chrono::steady_clock::now() + delay_;
    return d;
  }
  void wait() {
    ++*calls_;
    std::this_thread::sleep_for(delay_);
  }
  std::unique_ptr<runtime::Communicator> owned_;
  runtime::Communicator* inner_;
  std::chrono::microseconds delay_;
  std::shared_ptr<std::atomic<int64_t>> calls_;
};

}  // namespace autosp::testing
