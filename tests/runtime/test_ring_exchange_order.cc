// The ring schedule's contract with a device RingOps (ring_attention.h): a device whose
// transfers run on another stream relies on before_exchange() preceding every transfer and
// after_exchange() following every completed one before it touches anything again, and on
// the schedule leaving a transfer's buffers alone until it completed.
//
// Two wrappers check that on the CPU ring:
// - LateComm moves a send_recv's bytes only in wait() (the latest a stream-ordered transfer
//   may run): a block read before its transfer completed, or a send buffer written while in
//   flight, changes the results, which must equal the plain ring's exactly (same kernels, same
//   order of additions);
// - HookCheck wraps the CPU RingOps and fails when an operation runs between a transfer's
//   wait() and after_exchange(), or a transfer starts without before_exchange().
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <vector>

#include "runtime/ring_attention.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::runtime;

namespace {

// What both wrappers of one rank see.
struct Order {
  bool prepared = false;    // before_exchange() since the last transfer started
  bool unordered = false;   // a transfer completed and after_exchange() has not run yet
  int transfers = 0, violations = 0;
};

class LateComm final : public Communicator {
 public:
  LateComm(Communicator& inner, Order& order) : inner_(inner), order_(order) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  void all_reduce_sum(float* d, int64_t n) override { inner_.all_reduce_sum(d, n); }
  void all_gather(const void* s, void* r, int64_t b) override { inner_.all_gather(s, r, b); }
  void reduce_scatter_sum(const float* s, float* r, int64_t n) override { inner_.reduce_scatter_sum(s, r, n); }
  void all_to_all(const void* s, void* r, int64_t b) override { inner_.all_to_all(s, r, b); }
  void broadcast(void* d, int64_t b, int root) override { inner_.broadcast(d, b, root); }
  void barrier() override { inner_.barrier(); }
  std::unique_ptr<Communicator> split(int, int) override { return nullptr; }
  void abort(const std::string& why) override { inner_.abort(why); }
  std::unique_ptr<Pending> start_all_to_all(const void* s, void* r, int64_t b) override {
    return inner_.start_all_to_all(s, r, b);
  }
  std::unique_ptr<Pending> start_all_reduce_sum(float* d, int64_t n) override {
    return inner_.start_all_reduce_sum(d, n);
  }

  // The blocking exchange (the backward's last hop) completes on return.
  void send_recv(const void* s, int64_t sb, int dst, void* r, int64_t rb, int src) override {
    started();
    inner_.send_recv(s, sb, dst, r, rb, src);
    order_.unordered = true;
  }
  std::unique_ptr<Pending> start_send_recv(const void* s, int64_t sb, int dst, void* r, int64_t rb,
                                           int src) override {
    started();
    struct Late final : Pending {
      LateComm* comm;
      const void* s;
      int64_t sb;
      int dst;
      void* r;
      int64_t rb;
      int src;
      void wait() override {
        comm->inner_.send_recv(s, sb, dst, r, rb, src);
        comm->order_.unordered = true;
      }
    };
    auto p = std::make_unique<Late>();
    p->comm = this, p->s = s, p->sb = sb, p->dst = dst, p->r = r, p->rb = rb, p->src = src;
    return p;
  }

 private:
  void started() {
    order_.violations += !order_.prepared || order_.unordered;
    order_.prepared = false;
    ++order_.transfers;
  }
  Communicator& inner_;
  Order& order_;
};

class HookCheck final : public RingOps {
 public:
  HookCheck(std::unique_ptr<RingOps> inner, Order& order) : inner_(std::move(inner)), order_(order) {}
  size_t kv_elem_bytes() const override { return inner_->kv_elem_bytes(); }
  size_t acc_elem_bytes() const override { return inner_->acc_elem_bytes(); }
  std::byte* block_buffer(int which, size_t bytes) override { return inner_->block_buffer(which, bytes); }
  void load(const RingBlock& dst) override { touch(), inner_->load(dst); }
  void zero(void* dst, size_t bytes) override { touch(), inner_->zero(dst, bytes); }
  bool hidden(const RingBlock& blk) override { return touch(), inner_->hidden(blk); }
  void before_exchange() override {
    touch();
    order_.prepared = true;
  }
  void after_exchange() override { order_.unordered = false; }
  void attend(const RingBlock& blk, bool first) override { touch(), inner_->attend(blk, first); }
  void finish_forward(bool have) override { touch(), inner_->finish_forward(have); }
  void attend_backward(const RingBlock& blk, bool first) override { touch(), inner_->attend_backward(blk, first); }
  void keep_grads(void* dk, void* dv, bool first) override { touch(), inner_->keep_grads(dk, dv, first); }
  void finish_backward(const void* dk, const void* dv, bool have) override {
    touch(), inner_->finish_backward(dk, dv, have);
  }

 private:
  void touch() { order_.violations += order_.unordered; }
  std::unique_ptr<RingOps> inner_;
  Order& order_;
};

}  // namespace

TEST_CASE("the ring schedule calls the exchange hooks around every transfer and leaves in-flight buffers alone") {
  const int64_t B = 2, H = 4, Hkv = 2, D = 8, T_total = 48;
  for (int P : {1, 2, 3, 4})
    for (bool causal : {true, false}) {
      CAPTURE(P, causal);
      const int64_t T = T_total / P, qn = B * T * H * D, kn = B * T * Hkv * D;
      std::vector<Order> orders(static_cast<size_t>(P));
      std::vector<int> mismatches(static_cast<size_t>(P), -1);
      run_local(P, [&](Communicator& c) {
        const int r = c.rank();
        using autosp::testing::normal_vec;
        const auto q = normal_vec(qn, 5, 10 + r), k = normal_vec(kn, 5, 20 + r), v = normal_vec(kn, 5, 30 + r),
                   dout = normal_vec(qn, 5, 40 + r);
        std::vector<int32_t> idx;
        for (int64_t b = 0; b < B; ++b) {
          const std::vector<int32_t> row = zigzag_indices(T_total, P, r);
          idx.insert(idx.end(), row.begin(), row.end());
        }
        RingAttentionArgs a;
        a.B = B, a.T = T, a.H = H, a.Hkv = Hkv, a.D = D, a.causal = causal, a.scale = 0.3f, a.idx = idx.data();
        // The plain ring.
        std::vector<float> o(qn), lse(B * H * T), dq(qn), dk(kn), dv(kn);
        ring_attention_forward(c, a, q.data(), k.data(), v.data(), o.data(), lse.data());
        ring_attention_backward(c, a, q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(),
                                dk.data(), dv.data());
        // The checked one, with late transfers.
        Order& order = orders[size_t(r)];
        LateComm late(c, order);
        std::vector<float> o2(qn), lse2(B * H * T), dq2(qn), dk2(kn), dv2(kn);
        HookCheck fwd(cpu_ring_forward_ops(a, q.data(), k.data(), v.data(), o2.data(), lse2.data()), order);
        ring_attention_forward(late, a, fwd);
        HookCheck bwd(cpu_ring_backward_ops(a, q.data(), k.data(), v.data(), o2.data(), lse2.data(), dout.data(),
                                            dq2.data(), dk2.data(), dv2.data()),
                      order);
        ring_attention_backward(late, a, bwd);
        auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
          return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
        };
        mismatches[size_t(r)] = !same(o, o2) + !same(lse, lse2) + !same(dq, dq2) + !same(dk, dk2) + !same(dv, dv2);
      });
      for (int r = 0; r < P; ++r) {
        CAPTURE(r);
        CHECK(mismatches[size_t(r)] == 0);
        CHECK(orders[size_t(r)].violations == 0);
        // Forward P-1 transfers; backward P in the loop and the accumulators' last hop.
        CHECK(orders[size_t(r)].transfers == (P - 1) + (P > 1 ? P + 1 : 0));
      }
    }
}
