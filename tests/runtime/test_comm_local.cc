// The local communicator (runtime/comm_local.cc): every collective against its serial result
// at 1-4 ranks (the checks in comm_checks.h, shared with the MPI program), barrier ordering,
// and failure handling - a rank that throws, aborts or ends early never leaves its peers
// hanging. Assertions run on the main thread after run_local: Catch2 is not thread-safe.
#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>

#include "runtime/comm.h"
#include "tests/runtime/comm_checks.h"
#include "tests/runtime/staging_mem_ops.h"

using namespace autosp::runtime;
namespace tc = autosp::testing::comm;

namespace {

// Runs one shared check on n local ranks (moving bytes with mem; null: host); returns every
// rank's failures, rank by rank.
std::vector<std::string> run_check(int n, const tc::NamedCheck& check, MemOps* mem = nullptr) {
  std::vector<tc::Report> reports(n);
  run_local(
      n,
      [&](Communicator& c) {
        tc::Report& rep = reports[c.rank()];
        rep.rank = c.rank();
        check.run(c, rep, tc::SumOrder::rank_order);
      },
      mem);
  std::vector<std::string> failures;
  for (const auto& r : reports) {
    failures.insert(failures.end(), r.failures.begin(), r.failures.end());
    if (r.checked == 0) failures.push_back("rank " + std::to_string(r.rank) + " checked nothing");
  }
  return failures;
}

void run_shared_check(const char* name) {
  for (const auto& check : tc::all_checks()) {
    if (std::string(check.name) != name) continue;
    for (int n : {1, 2, 3, 4}) {
      INFO(check.name << " on " << n << " ranks");
      const auto failures = run_check(n, check);
      for (const auto& f : failures) UNSCOPED_INFO(f);
      CHECK(failures.empty());
    }
    return;
  }
  FAIL("no shared check named " << name);
}

// What each rank saw: "ok" or the CommError message.
struct Outcomes {
  std::mutex mu;
  std::vector<std::string> seen;
  explicit Outcomes(int n) : seen(n) {}
  void set(int r, std::string s) {
    std::lock_guard lk(mu);
    seen[r] = std::move(s);
  }
};

}  // namespace

TEST_CASE("local communicator: all_reduce_sum gives every rank the rank-order sum, bit for bit") {
  run_shared_check("all_reduce_sum");
}
TEST_CASE("local communicator: all_gather puts rank j's bytes in chunk j") { run_shared_check("all_gather"); }
TEST_CASE("local communicator: reduce_scatter_sum gives rank r the rank-order sum of chunk r") {
  run_shared_check("reduce_scatter_sum");
}
TEST_CASE("local communicator: all_to_all moves chunk j of rank i to chunk i of rank j") {
  run_shared_check("all_to_all");
}
TEST_CASE("local communicator: send_recv around a ring delivers each rank's message to the next") {
  run_shared_check("send_recv ring");
}
TEST_CASE("local communicator: broadcast copies the root's bytes to every rank, for every root") {
  run_shared_check("broadcast");
}
TEST_CASE("local communicator: split forms groups by color ordered by key, and collectives stay inside them") {
  run_shared_check("split");
}
TEST_CASE("local communicator: started collectives complete whatever order ranks wait in") {
  run_shared_check("start collectives");
}
TEST_CASE("local communicator: a ring of start_send_recv completes when all ranks start then wait") {
  run_shared_check("start_send_recv ring");
}

TEST_CASE("local communicator: with a device MemOps every check gives the host path's bits, sums staged on the host") {
  // Host memory behind a MemOps that claims to be a device's: the same checks (rank-order
  // sums bit for bit) through the staging path device buffers take.
  for (const auto& check : tc::all_checks())
    for (int n : {1, 2, 3, 4}) {
      INFO(check.name << " on " << n << " ranks");
      autosp::testing::StagingMemOps mem;
      const auto failures = run_check(n, check, &mem);
      for (const auto& f : failures) UNSCOPED_INFO(f);
      CHECK(failures.empty());
      if (n > 1) CHECK(mem.copies + mem.to_host_calls > 0);  // every check moves bytes between ranks
      // Every operation is complete when it returns: each ends with a synchronize.
      CHECK(mem.synchronizes > 0);
    }
}

TEST_CASE("local communicator: 4 ranks split by rank/2 and by rank%2 form the expected pairs") {
  // The process-mesh layout: SP groups of consecutive ranks, DP groups across them.
  std::vector<std::vector<int32_t>> sp(4, std::vector<int32_t>(2)), dp(4, std::vector<int32_t>(2));
  run_local(4, [&](Communicator& c) {
    int32_t me = c.rank();
    auto s = c.split(c.rank() / 2, c.rank());
    auto d = c.split(c.rank() % 2, c.rank());
    s->all_gather(&me, sp[c.rank()].data(), sizeof(me));
    d->all_gather(&me, dp[c.rank()].data(), sizeof(me));
  });
  CHECK(sp == std::vector<std::vector<int32_t>>{{0, 1}, {0, 1}, {2, 3}, {2, 3}});
  CHECK(dp == std::vector<std::vector<int32_t>>{{0, 2}, {1, 3}, {0, 2}, {1, 3}});
}

TEST_CASE("local communicator: no rank leaves a barrier before every rank has entered it") {
  for (int n : {1, 2, 3, 4}) {
    std::atomic<int> entered{0};
    std::vector<int> seen(n);
    run_local(n, [&](Communicator& c) {
      for (int round = 1; round <= 20; ++round) {
        entered.fetch_add(1);
        c.barrier();
        // Everyone entered this round's barrier; nobody can enter the next one until this
        // rank does, so the count is exact.
        if (entered.load() != round * n) seen[c.rank()] = entered.load();
        c.barrier();
      }
    });
    CHECK(seen == std::vector<int>(n, 0));
  }
}

TEST_CASE("local communicator: a rank that throws ends its peers' waits, and run_local rethrows its exception") {
  for (int n : {2, 3, 4}) {
    INFO(n << " ranks");
    Outcomes out(n);
    auto body = [&](Communicator& c) {
      // Peers wait first inside a group without the failing rank, then in the world: both
      // waits must end.
      auto g = c.split(c.rank() == n - 1 ? -1 : 0, 0);
      if (c.rank() == n - 1) throw std::runtime_error("rank failed on purpose");
      try {
        g->barrier();
        std::vector<float> x(10, 1.0f);
        c.all_reduce_sum(x.data(), 10);
        out.set(c.rank(), "ok");
      } catch (const CommError& e) {
        out.set(c.rank(), e.what());
        throw;
      }
    };
    REQUIRE_THROWS_WITH(run_local(n, body), "rank failed on purpose");
    for (int r = 0; r < n - 1; ++r) {
      INFO("rank " << r << " saw: " << out.seen[r]);
      CHECK_THAT(out.seen[r], Catch::Contains("rank " + std::to_string(n - 1) + " failed: rank failed on purpose"));
    }
  }
}

TEST_CASE("local communicator: a rank that throws with a send_recv in flight wakes the peer waiting for it") {
  Outcomes out(2);
  auto body = [&](Communicator& c) {
    int32_t v = c.rank(), got = -1;
    if (c.rank() == 1) {
      auto p = c.start_send_recv(&v, 4, 0, &got, 4, 0);  // started, then abandoned by the throw
      throw std::runtime_error("boom");
    }
    try {
      c.barrier();  // rank 1 never gets here
      out.set(0, "ok");
    } catch (const CommError& e) {
      out.set(0, e.what());
      throw;
    }
  };
  REQUIRE_THROWS_WITH(run_local(2, body), "boom");
  CHECK_THAT(out.seen[0], Catch::Contains("rank 1"));
}

TEST_CASE("local communicator: abort(why) makes waiting peers throw CommError with the reason") {
  for (int n : {1, 2, 4}) {
    Outcomes out(n);
    auto body = [&](Communicator& c) {
      if (c.rank() == 0) c.abort("disk full");  // then it waits too: its own calls fail as well
      try {
        c.barrier();
        out.set(c.rank(), "ok");
      } catch (const CommError& e) {
        out.set(c.rank(), e.what());
        if (c.rank() != 0) throw;
      }
    };
    // Rank 0 returns normally after aborting; run_local still reports the abort.
    REQUIRE_THROWS_WITH(run_local(n, body), Catch::Contains("disk full"));
    for (int r = 0; r < n; ++r) {
      INFO("rank " << r);
      CHECK_THAT(out.seen[r], Catch::Contains("disk full"));
    }
  }
}

TEST_CASE("local communicator: a rank that returns without joining makes its peers throw, not hang") {
  auto skip_barrier = [](Communicator& c) {
    if (c.rank() == 2) return;
    c.barrier();
  };
  REQUIRE_THROWS_WITH(run_local(3, skip_barrier), Catch::Contains("rank 2 ended without joining"));
  auto skip_send_recv = [](Communicator& c) {
    if (c.rank() == 1) return;
    char b = 0;
    c.send_recv(&b, 1, 1, &b, 1, 1);
  };
  REQUIRE_THROWS_WITH(run_local(2, skip_send_recv), Catch::Contains("ended without matching"));
}

TEST_CASE("local communicator: mismatched calls between ranks are reported on every rank") {
  auto counts = [](Communicator& c) {
    std::vector<float> x(8);
    c.all_reduce_sum(x.data(), c.rank() == 0 ? 8 : 4);
  };
  REQUIRE_THROWS_WITH(run_local(2, counts), Catch::Contains("with count 8") || Catch::Contains("with count 4"));
  auto kinds = [](Communicator& c) {
    if (c.rank() == 0)
      c.barrier();
    else
      c.broadcast(nullptr, 0, 0);
  };
  REQUIRE_THROWS_WITH(run_local(2, kinds), Catch::Contains("while another rank called"));
  auto sizes = [](Communicator& c) {
    char b[16] = {};
    const int peer = 1 - c.rank();
    c.send_recv(b, c.rank() == 0 ? 8 : 16, peer, b + 8, 8, peer);
  };
  REQUIRE_THROWS_WITH(run_local(2, sizes), Catch::Contains("sends 16 bytes to rank 0, which expects 8"));
  REQUIRE_THROWS_AS(run_local(2, [](Communicator& c) { c.send_recv(nullptr, 0, 2, nullptr, 0, 0); }), CommError);
  REQUIRE_THROWS_AS(run_local(0, [](Communicator&) {}), std::invalid_argument);
}

TEST_CASE("local communicator: wait() twice on one operation is an error") {
  auto twice = [](Communicator& c) {
    float x = 1;
    auto p = c.start_all_reduce_sum(&x, 1);
    p->wait();
    p->wait();
  };
  REQUIRE_THROWS_WITH(run_local(1, twice), Catch::Contains("wait() called twice"));
}
