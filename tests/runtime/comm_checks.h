// Communicator checks shared by the local tests (test_comm_local.cc, ranks as threads) and
// the MPI check program (tests/mpi/comm_mpi_check.cc, ranks as processes), so both
// implementations are held to the same results.
//
// Each check runs on every rank of a communicator and records failures in that rank's
// Report instead of asserting: Catch2 assertions are not thread-safe, and the MPI program has
// no Catch. Every expected value is computed serially from the same generators the ranks
// use, independently of the communicator under test.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/comm.h"

namespace autosp::testing::comm {

using runtime::Communicator;
using runtime::Pending;

struct Report {
  int rank = 0;
  int checked = 0;
  std::vector<std::string> failures;
  void expect(bool ok, const std::string& what) {
    ++checked;
    if (!ok) failures.push_back("rank " + std::to_string(rank) + ": " + what);
  }
};

inline uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Rank r's element i of input stream `salt`: magnitudes spread over 2^-6 .. 2^6, so a sum's
// round-off depends on the order of addition and a wrong order shows up in the bits.
inline float value(int salt, int rank, int64_t i) {
  const uint32_t h = mix(static_cast<uint32_t>(salt) * 0x9e3779b9U ^
                         mix(static_cast<uint32_t>(rank) * 0x85ebca6bU ^ static_cast<uint32_t>(i)));
  const float mant = static_cast<float>(h & 0xFFFFFF) / 16777216.0f - 0.5f;
  return std::ldexp(mant, static_cast<int>((h >> 24) % 13) - 6);
}

inline uint8_t byte(int salt, int rank, int64_t i) {
  return static_cast<uint8_t>(mix(static_cast<uint32_t>(salt) * 0x27d4eb2dU ^ mix(static_cast<uint32_t>(rank)) ^
                                  static_cast<uint32_t>(i) * 0x165667b1U));
}

// Σ over ranks 0..p-1 of value(salt, r, i), added in rank order.
inline float rank_order_sum(int salt, int p, int64_t i) {
  float s = value(salt, 0, i);
  for (int r = 1; r < p; ++r) s += value(salt, r, i);
  return s;
}

inline bool same_bits(const float* a, const float* b, int64_t n) {
  return n == 0 || std::memcmp(a, b, n * sizeof(float)) == 0;
}

// How closely a float sum must match the rank-order reference. The local communicator adds
// in rank order (exact); MPI's reduction order is implementation-defined, so there results
// may differ in the last bits - bounded by p * ulp(Σ|x|) - but must still be identical on
// every rank.
enum class SumOrder { rank_order, any };

inline bool close_to_reference(float got, int salt, int p, int64_t i) {
  float abs_sum = 0;
  for (int r = 0; r < p; ++r) abs_sum += std::fabs(value(salt, r, i));
  return std::fabs(got - rank_order_sum(salt, p, i)) <= 2.0f * p * abs_sum * 6e-8f;
}

// True on every rank iff `local` is byte-identical on every rank (gathers it to compare).
inline bool identical_on_all_ranks(Communicator& c, const void* local, int64_t bytes) {
  std::vector<char> all(static_cast<size_t>(bytes) * c.size());
  c.all_gather(local, all.data(), bytes);
  for (int r = 1; r < c.size(); ++r)
    if (bytes > 0 && std::memcmp(all.data(), all.data() + r * bytes, bytes) != 0) return false;
  return true;
}

inline void check_sum(Report& rep, const char* what, const std::vector<float>& got, int salt, int p, int64_t offset,
                      SumOrder order) {
  int64_t bad = -1;
  for (int64_t i = 0; i < static_cast<int64_t>(got.size()) && bad < 0; ++i) {
    const float want = rank_order_sum(salt, p, offset + i);
    const bool ok = order == SumOrder::rank_order ? std::memcmp(&got[i], &want, sizeof(float)) == 0
                                                  : close_to_reference(got[i], salt, p, offset + i);
    if (!ok) bad = i;
  }
  rep.expect(bad < 0, std::string(what) + " element " + std::to_string(bad) + " differs from the rank-order sum");
}

// all_reduce_sum over more elements than one internal block, plus the empty case.
inline void check_all_reduce(Communicator& c, Report& rep, SumOrder order) {
  const int p = c.size(), r = c.rank();
  const int64_t n = 5000;
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = value(1, r, i);
  c.all_reduce_sum(x.data(), n);
  check_sum(rep, "all_reduce_sum", x, 1, p, 0, order);
  rep.expect(identical_on_all_ranks(c, x.data(), n * sizeof(float)), "all_reduce_sum results differ between ranks");
  c.all_reduce_sum(nullptr, 0);
}

inline void check_all_gather(Communicator& c, Report& rep) {
  const int p = c.size(), r = c.rank();
  const int64_t bytes = 13;  // odd, so chunk offsets are not aligned
  std::vector<uint8_t> send(bytes), recv(bytes * p, 0xEE);
  for (int64_t i = 0; i < bytes; ++i) send[i] = byte(2, r, i);
  c.all_gather(send.data(), recv.data(), bytes);
  bool ok = true;
  for (int j = 0; j < p; ++j)
    for (int64_t i = 0; i < bytes; ++i) ok &= recv[j * bytes + i] == byte(2, j, i);
  rep.expect(ok, "all_gather: chunk j is not rank j's send");
}

inline void check_reduce_scatter(Communicator& c, Report& rep, SumOrder order) {
  const int p = c.size(), r = c.rank();
  const int64_t n = 1000;
  std::vector<float> send(n * p), recv(n, -1.0f);
  for (int64_t i = 0; i < n * p; ++i) send[i] = value(3, r, i);
  c.reduce_scatter_sum(send.data(), recv.data(), n);
  check_sum(rep, "reduce_scatter_sum", recv, 3, p, r * n, order);
}

inline void check_all_to_all(Communicator& c, Report& rep) {
  const int p = c.size(), r = c.rank();
  const int64_t bytes = 7;
  // Byte i of the chunk rank s sends to rank d is byte(4, s, d * bytes + i).
  std::vector<uint8_t> send(bytes * p), recv(bytes * p, 0xEE);
  for (int64_t i = 0; i < bytes * p; ++i) send[i] = byte(4, r, i);
  c.all_to_all(send.data(), recv.data(), bytes);
  bool ok = true;
  for (int s = 0; s < p; ++s)
    for (int64_t i = 0; i < bytes; ++i) ok &= recv[s * bytes + i] == byte(4, s, r * bytes + i);
  rep.expect(ok, "all_to_all: chunk s of recv is not what rank s sent to this rank");
}

// Message sizes differ per sender, so a receive matched to the wrong send shows up.
inline int64_t ring_bytes(int sender, int round = 0) { return 10 + 3 * sender + round; }

inline void check_send_recv_ring(Communicator& c, Report& rep) {
  const int p = c.size(), r = c.rank();
  const int dst = (r + 1) % p, src = (r + p - 1) % p;
  std::vector<uint8_t> send(ring_bytes(r)), recv(ring_bytes(src), 0xEE);
  for (size_t i = 0; i < send.size(); ++i) send[i] = byte(5, r, static_cast<int64_t>(i));
  c.send_recv(send.data(), static_cast<int64_t>(send.size()), dst, recv.data(), static_cast<int64_t>(recv.size()), src);
  bool ok = true;
  for (size_t i = 0; i < recv.size(); ++i) ok &= recv[i] == byte(5, src, static_cast<int64_t>(i));
  rep.expect(ok, "send_recv ring: did not receive rank " + std::to_string(src) + "'s message");
}

inline void check_broadcast(Communicator& c, Report& rep) {
  const int p = c.size(), r = c.rank();
  for (int root = 0; root < p; ++root) {
    const int64_t bytes = 21 + root;
    std::vector<uint8_t> data(bytes);
    for (int64_t i = 0; i < bytes; ++i) data[i] = byte(6, r, i);  // non-roots start with their own bytes
    c.broadcast(data.data(), bytes, root);
    bool ok = true;
    for (int64_t i = 0; i < bytes; ++i) ok &= data[i] == byte(6, root, i);
    rep.expect(ok, "broadcast from root " + std::to_string(root) + ": data differs from the root's");
  }
}

// Runs a few collectives inside sub-communicator g (whose members are world ranks `members`
// in group-rank order) and checks them against the members' serial results.
inline void check_group(Communicator& g, Report& rep, const std::vector<int>& members, const std::string& name) {
  const int world_rank = members[g.rank()];
  rep.expect(g.size() == static_cast<int>(members.size()), name + ": wrong size");
  // all_gather of world ranks tells the membership and order.
  int32_t me = world_rank;
  std::vector<int32_t> got(g.size());
  g.all_gather(&me, got.data(), sizeof(me));
  rep.expect(std::equal(got.begin(), got.end(), members.begin(), members.end()), name + ": members or order wrong");
  // all_reduce of values keyed by world rank; the reference adds in group-rank order.
  const int64_t n = 300;
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = value(7, world_rank, i);
  g.all_reduce_sum(x.data(), n);
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) {
    float s = value(7, members[0], i);
    for (size_t k = 1; k < members.size(); ++k) s += value(7, members[k], i);
    ok &= std::fabs(x[i] - s) <= 1e-5f * (1 + std::fabs(s));
  }
  rep.expect(ok, name + ": all_reduce_sum inside the group wrong");
  rep.expect(identical_on_all_ranks(g, x.data(), n * sizeof(float)), name + ": all_reduce_sum differs between members");
  // A ring inside the group reaches only members.
  const int dst = (g.rank() + 1) % g.size(), src = (g.rank() + g.size() - 1) % g.size();
  int32_t from = -1;
  g.send_recv(&me, sizeof(me), dst, &from, sizeof(from), src);
  rep.expect(from == members[src], name + ": ring step received from the wrong rank");
  g.barrier();
}

// The members (world ranks, in new-rank order) of the group world rank r joins when every
// rank w passes color(w), key(w).
inline std::vector<int> expected_members(int p, int r, const std::function<int(int)>& color,
                                         const std::function<int(int)>& key) {
  std::vector<int> m;
  for (int w = 0; w < p; ++w)
    if (color(w) == color(r)) m.push_back(w);
  std::stable_sort(m.begin(), m.end(), [&](int a, int b) { return key(a) < key(b); });
  return m;
}

inline void check_split(Communicator& c, Report& rep) {
  const int p = c.size(), r = c.rank();
  struct Case {
    std::string name;
    std::function<int(int)> color, key;
  };
  const std::vector<Case> cases = {
      {"color rank/2", [](int w) { return w / 2; }, [](int w) { return w; }},
      {"color rank%2", [](int w) { return w % 2; }, [](int w) { return w; }},
      {"color rank%2, reversed keys", [](int w) { return w % 2; }, [](int w) { return -w; }},
      {"one color, equal keys", [](int) { return 5; }, [](int) { return 0; }},
  };
  for (const auto& k : cases) {
    auto g = c.split(k.color(r), k.key(r));
    rep.expect(g != nullptr, k.name + ": split returned no communicator");
    if (!g) continue;
    const auto members = expected_members(p, r, k.color, k.key);
    rep.expect(members[g->rank()] == r, k.name + ": new rank does not follow (key, rank) order");
    check_group(*g, rep, members, k.name);
    // Splitting a sub-group again (transposed grouping inside it).
    auto h = g->split(g->rank() % 2, 0);
    std::vector<int> sub;
    for (int i = 0; i < g->size(); ++i)
      if (i % 2 == g->rank() % 2) sub.push_back(members[i]);
    rep.expect(h != nullptr, k.name + ": nested split returned no communicator");
    if (h) check_group(*h, rep, sub, k.name + " / nested");
  }
  // A negative color joins no group; the others still form theirs.
  auto g = c.split(r == 0 ? -1 : 1, 0);
  rep.expect((r == 0) == (g == nullptr), "split with negative color: only rank 0 should get no communicator");
  if (g) {
    std::vector<int> members;
    for (int w = 1; w < p; ++w) members.push_back(w);
    check_group(*g, rep, members, "ranks 1..p-1");
  }
  c.barrier();
}

// Two collectives in flight at once, waited in an order that differs between ranks: each is
// matched by the order it was started, not waited.
inline void check_start_collectives(Communicator& c, Report& rep, SumOrder order) {
  const int p = c.size(), r = c.rank();
  const int64_t n = 3000, bytes = 5;
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = value(8, r, i);
  std::vector<uint8_t> send(bytes * p), recv(bytes * p, 0xEE);
  for (int64_t i = 0; i < bytes * p; ++i) send[i] = byte(9, r, i);
  auto a = c.start_all_reduce_sum(x.data(), n);
  auto b = c.start_all_to_all(send.data(), recv.data(), bytes);
  if (r % 2 == 0) {
    a->wait();
    b->wait();
  } else {
    b->wait();
    a->wait();
  }
  check_sum(rep, "start_all_reduce_sum", x, 8, p, 0, order);
  bool ok = true;
  for (int s = 0; s < p; ++s)
    for (int64_t i = 0; i < bytes; ++i) ok &= recv[s * bytes + i] == byte(9, s, r * bytes + i);
  rep.expect(ok, "start_all_to_all: wrong data");
}

// Every rank starts two rounds of a ring exchange, then waits for the second round first.
// Must not deadlock; messages between a pair match in the order they were started.
inline void check_start_ring(Communicator& c, Report& rep) {
  const int p = c.size(), r = c.rank();
  const int dst = (r + 1) % p, src = (r + p - 1) % p;
  std::vector<std::vector<uint8_t>> send(2), recv(2);
  std::vector<std::unique_ptr<Pending>> pending;
  for (int round = 0; round < 2; ++round) {
    send[round].resize(ring_bytes(r, round));
    recv[round].assign(ring_bytes(src, round), 0xEE);
    for (size_t i = 0; i < send[round].size(); ++i) send[round][i] = byte(10 + round, r, static_cast<int64_t>(i));
    pending.push_back(c.start_send_recv(send[round].data(), static_cast<int64_t>(send[round].size()), dst,
                                        recv[round].data(), static_cast<int64_t>(recv[round].size()), src));
  }
  pending[1]->wait();
  pending[0]->wait();
  for (int round = 0; round < 2; ++round) {
    bool ok = true;
    for (size_t i = 0; i < recv[round].size(); ++i)
      ok &= recv[round][i] == byte(10 + round, src, static_cast<int64_t>(i));
    rep.expect(ok, "start_send_recv ring round " + std::to_string(round) + ": wrong data");
  }
  // Exchange with the rank opposite: for even p a pairwise swap (dst == src), not a ring.
  const int peer = (r + p / 2) % p;
  int32_t mine = 1000 + r, theirs = -1;
  auto s = c.start_send_recv(&mine, sizeof(mine), peer, &theirs, sizeof(theirs), (r - p / 2 + p) % p);
  s->wait();
  rep.expect(theirs == 1000 + (r - p / 2 + p) % p, "start_send_recv pairwise swap: wrong data");
}

struct NamedCheck {
  const char* name;
  std::function<void(Communicator&, Report&, SumOrder)> run;
};

// Every shared check, in the order the MPI program runs them.
inline std::vector<NamedCheck> all_checks() {
  return {
      {"all_reduce_sum", [](Communicator& c, Report& r, SumOrder o) { check_all_reduce(c, r, o); }},
      {"all_gather", [](Communicator& c, Report& r, SumOrder) { check_all_gather(c, r); }},
      {"reduce_scatter_sum", [](Communicator& c, Report& r, SumOrder o) { check_reduce_scatter(c, r, o); }},
      {"all_to_all", [](Communicator& c, Report& r, SumOrder) { check_all_to_all(c, r); }},
      {"send_recv ring", [](Communicator& c, Report& r, SumOrder) { check_send_recv_ring(c, r); }},
      {"broadcast", [](Communicator& c, Report& r, SumOrder) { check_broadcast(c, r); }},
      {"split", [](Communicator& c, Report& r, SumOrder) { check_split(c, r); }},
      {"start collectives", [](Communicator& c, Report& r, SumOrder o) { check_start_collectives(c, r, o); }},
      {"start_send_recv ring", [](Communicator& c, Report& r, SumOrder) { check_start_ring(c, r); }},
  };
}

}  // namespace autosp::testing::comm
