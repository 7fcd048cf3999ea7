// Ring attention overlaps its K/V transfers with block attention: with a latency injected into
// every send_recv, forward and backward take barely longer than without, instead of one
// latency per ring step longer. (The measured-time counterpart of the schedule pass's golden
// tests: ring attention is one op whose exchange is double-buffered inside it.)
#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <random>
#include <tuple>

#include "runtime/ring_attention.h"
#include "tests/delay_comm.h"

using namespace autosp;
using namespace autosp::runtime;

namespace {

struct Times {
  double forward_s = 1e30, backward_s = 1e30;
};

// Rank 0's fastest forward and backward over `reps` rounds, each round timing once with no
// latency and once with `delay` per transfer, interleaved so both see the same machine load
// (load elsewhere only adds time, so the minimum is the estimate).
std::pair<Times, Times> ring_times(int P, int64_t T, std::chrono::microseconds delay, int reps) {
  const int64_t B = 1, H = 4, D = 64;
  Times base, slow;
  run_local(P, [&](Communicator& c) {
    testing::DelayComm fast_comm(c, std::chrono::microseconds(0)), slow_comm(c, delay);
    std::mt19937 rng(uint32_t(c.rank()));
    std::normal_distribution<float> nd;
    std::vector<float> q(B * T * H * D), k(q.size()), v(q.size()), o(q.size()), lse(B * H * T), dq(q.size()),
        dk(q.size()), dv(q.size()), dout(q.size());
    for (auto* x : {&q, &k, &v, &dout})
      for (float& e : *x) e = nd(rng);
    const std::vector<int32_t> idx = contiguous_indices(T * P, P, c.rank());
    const RingAttentionArgs a{B, T, H, H, D, /*causal=*/false, 0.125f, idx.data(), nullptr};
    for (int rep = 0; rep < reps; ++rep)
      for (Times* out : {&base, &slow}) {
        Communicator& ring = out == &base ? static_cast<Communicator&>(fast_comm) : slow_comm;
        c.barrier();
        const auto t0 = std::chrono::steady_clock::now();
        ring_attention_forward(ring, a, q.data(), k.data(), v.data(), o.data(), lse.data());
        const auto t1 = std::chrono::steady_clock::now();
        ring_attention_backward(ring, a, q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(),
                                dk.data(), dv.data());
        const auto t2 = std::chrono::steady_clock::now();
        if (c.rank() == 0) {
          out->forward_s = std::min(out->forward_s, std::chrono::duration<double>(t1 - t0).count());
          out->backward_s = std::min(out->backward_s, std::chrono::duration<double>(t2 - t1).count());
        }
      }
  });
  return {base, slow};
}

}  // namespace

TEST_CASE("ring attention hides its K/V transfers behind block attention", "[ring][overlap]") {
  const int P = 4;
  const int64_t T = 512;  // per rank; non-causal, so every ring step computes one full block
  const Times probe = ring_times(P, T, std::chrono::microseconds(0), 1).first;
  // A latency equal to one block's forward compute: hideable, and large next to timing noise.
  const auto delay = std::chrono::microseconds(int64_t(1e6 * probe.forward_s / P));
  REQUIRE(delay.count() > 0);
  const double d = std::chrono::duration<double>(delay).count();
  // Serialised, forward would add (P-1)·latency and backward P·latency. Overlapped, forward adds
  // little; backward adds its last dK/dV hop home (not overlapped) and little else. Other tests
  // running on the same 2 cores can starve a rank through a whole measurement, so up to three
  // measurements (overlap shows in the best; its absence shows in every one).
  Times base, slow;
  auto hidden = [&] {
    return slow.forward_s - base.forward_s < 0.5 * (P - 1) * d &&
           slow.backward_s - base.backward_s < d + 0.5 * (P - 1) * d;
  };
  for (int attempt = 0; attempt < 3 && (attempt == 0 || !hidden()); ++attempt)
    std::tie(base, slow) = ring_times(P, T, delay, 5);
  INFO("forward " << base.forward_s << " s -> " << slow.forward_s << " s, backward " << base.backward_s << " s -> "
                  << slow.backward_s << " s, latency " << d << " s per transfer");
  CHECK(slow.forward_s - base.forward_s < 0.5 * (P - 1) * d);
  CHECK(slow.backward_s - base.backward_s < d + 0.5 * (P - 1) * d);
}
