// The local communicator: ranks are threads of one process (run_local), exchanging data
// through shared memory. Used by fast tests and for several ranks sharing one device.
//
// How it works. Every communicator (the world and each group split() creates) is a Group:
// a table of collectives in flight, keyed by each rank's own collective counter (ranks issue
// collectives in the same order, as MPI requires), and per (src, dst) queues of unmatched
// sends and receives. A rank starting an operation registers its buffers; whoever completes
// the match - the last rank to join a collective, or the second side of a send/receive
// pair - does all the copying for everyone, outside the lock. So a started operation never
// depends on any rank calling wait(): ranks may wait in any order, and start-then-wait
// patterns (a ring of start_send_recv) cannot deadlock. The price is that one thread does
// the whole copy; that is memory-bound anyway (host buffers), or copy-engine-bound (ranks
// sharing one device).
//
// all_reduce_sum and reduce_scatter_sum add in rank order (((x0 + x1) + x2) + ...), computed
// once and handed to every rank, so all ranks get bit-identical results equal to the serial
// rank-order sum. (MPI's order is implementation-defined; see comm_mpi.cc.)
//
// Buffers. Every byte moves through the Universe's MemOps (run_local's mem): host memcpy, or
// a device's copy engine when the ranks' buffers are device memory. Sums read each rank's
// block into host memory (to_host), add on the host in rank order and write back
// (from_host), the same arithmetic for host and device buffers.
//
// Failure. All groups of one run_local share a Universe: one mutex, one condition variable,
// a failure flag and, per world rank, whether its function has ended. abort() on any
// communicator fails the whole universe (like MPI_Abort on MPI_COMM_WORLD): every waiter
// wakes and throws CommError, and every later call throws. A waiter also throws when a rank
// it still needs has already returned from its function, so a mismatched program fails
// instead of hanging. Buffers are never touched after their owner could have left: an
// operation is only performed while the universe has not failed (checked under the lock
// when it is matched), and a waiter whose operation is being copied waits for the copy to
// finish before it may throw.
//
// A color < 0 in split() means "join no group" (MPI_UNDEFINED); that rank gets nullptr.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "runtime/comm.h"
#include "runtime/mem_ops.h"

namespace autosp::runtime {
namespace {

struct Universe {
  std::mutex mu;
  std::condition_variable cv;  // notified on every state change; waiters re-check
  bool failed = false;
  std::string why;
  std::vector<bool> exited;  // by world rank: its function returned or threw
  MemOps* mem = nullptr;     // moves every byte between ranks' buffers; never null
};

std::string aborted_message(const Universe& u) { return "communicator aborted: " + u.why; }

// Marks the universe failed (first reason wins) and wakes every waiter. Caller holds u.mu.
void fail_locked(Universe& u, const std::string& why) {
  if (!u.failed) {
    u.failed = true;
    u.why = why;
  }
  u.cv.notify_all();
}

enum class Kind { all_reduce_sum, all_gather, reduce_scatter_sum, all_to_all, broadcast, barrier, split };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::all_reduce_sum: return "all_reduce_sum";
    case Kind::all_gather: return "all_gather";
    case Kind::reduce_scatter_sum: return "reduce_scatter_sum";
    case Kind::all_to_all: return "all_to_all";
    case Kind::broadcast: return "broadcast";
    case Kind::barrier: return "barrier";
    case Kind::split: return "split";
  }
  return "?";
}

// collecting: waiting for participants; running: one thread is copying (buffers in use);
// done: finished (error set if it failed).
enum class State { collecting, running, done };

struct Group;

// One rank's arguments to a collective.
struct Args {
  const void* in = nullptr;
  void* out = nullptr;
  int64_t n = 0;  // elements (float collectives) or bytes
  int root = 0;
  int color = 0;
  int key = 0;
};

struct CollOp {
  Kind kind;
  uint64_t seq;
  std::vector<Args> args;
  std::vector<bool> joined;
  int arrived = 0;
  State state = State::collecting;
  std::string error;
  // split() results by rank (nullptr: the rank joins no group).
  std::vector<std::shared_ptr<Group>> new_group;
  std::vector<int> new_rank;
};

// One side of a point-to-point transfer: a send (send != nullptr) or a receive.
struct Half {
  const void* send = nullptr;
  void* recv = nullptr;
  int64_t bytes = 0;
  int src = 0, dst = 0;  // group ranks
  State state = State::collecting;
  std::string error;
};

struct Group {
  std::shared_ptr<Universe> u;
  std::vector<int> world;                           // group rank -> world rank
  std::map<uint64_t, std::shared_ptr<CollOp>> ops;  // collectives not all ranks have joined
  // Unmatched sends and receives, by src * size + dst; FIFO, so messages between a pair
  // arrive in the order they were started (MPI's non-overtaking rule).
  std::vector<std::deque<std::shared_ptr<Half>>> sends, recvs;

  Group(std::shared_ptr<Universe> universe, std::vector<int> world_ranks)
      : u(std::move(universe)),
        world(std::move(world_ranks)),
        sends(world.size() * world.size()),
        recvs(world.size() * world.size()) {}
  int size() const { return static_cast<int>(world.size()); }
};

// dst[k][i] := ((src[0][i] + src[1][i]) + src[2][i]) + ... for every k and i < n: the
// rank-order sum, computed once on the host. Blocked so the accumulator stays small; element
// i depends only on element i of each source, so writing block b back (in place) cannot
// disturb later blocks. Host sources are read where they are; device ones are staged, in
// larger blocks so each copy is worth its overhead.
void sum_in_rank_order(MemOps& mem, const std::vector<const float*>& src, const std::vector<float*>& dst,
                       int64_t n) {
  const int64_t block = std::min<int64_t>(n, mem.device() ? int64_t(1) << 20 : 2048);
  std::vector<float> acc(block), staged(mem.device() ? block : 0);
  for (int64_t b = 0; b < n; b += block) {
    const int64_t m = std::min(block, n - b);
    const size_t bytes = size_t(m) * sizeof(float);
    mem.to_host(acc.data(), src[0] + b, bytes);
    for (size_t r = 1; r < src.size(); ++r) {
      const float* x = src[r] + b;
      if (mem.device()) {
        mem.to_host(staged.data(), x, bytes);
        x = staged.data();
      }
      for (int64_t i = 0; i < m; ++i) acc[i] += x[i];
    }
    for (float* d : dst) mem.from_host(d + b, acc.data(), bytes);
  }
}

// Does the copying of a collective all ranks have joined, complete on return. Runs outside
// the lock, on one thread.
void perform(Group& g, CollOp& op) {
  MemOps& mem = *g.u->mem;
  const int p = g.size();
  const auto& a = op.args;
  switch (op.kind) {
    case Kind::all_reduce_sum: {
      std::vector<const float*> src(p);
      std::vector<float*> dst(p);
      for (int r = 0; r < p; ++r) {
        src[r] = static_cast<const float*>(a[r].in);
        dst[r] = static_cast<float*>(a[r].out);
      }
      sum_in_rank_order(mem, src, dst, a[0].n);
      break;
    }
    case Kind::all_gather: {
      const int64_t bytes = a[0].n;
      for (int r = 0; r < p; ++r)
        for (int j = 0; j < p; ++j) {
          char* dst = static_cast<char*>(a[r].out) + j * bytes;
          // A rank may gather in place (send = its own chunk of recv): nothing to copy.
          if (dst != a[j].in) mem.copy(dst, a[j].in, size_t(bytes));
        }
      break;
    }
    case Kind::reduce_scatter_sum: {
      const int64_t n = a[0].n;
      std::vector<const float*> src(p);
      for (int r = 0; r < p; ++r) {
        for (int j = 0; j < p; ++j) src[j] = static_cast<const float*>(a[j].in) + r * n;
        sum_in_rank_order(mem, src, {static_cast<float*>(a[r].out)}, n);
      }
      break;
    }
    case Kind::all_to_all: {
      const int64_t bytes = a[0].n;
      if (bytes == 0) break;
      for (int i = 0; i < p; ++i)
        for (int j = 0; j < p; ++j)
          mem.copy(static_cast<char*>(a[i].out) + j * bytes, static_cast<const char*>(a[j].in) + i * bytes,
                   size_t(bytes));
      break;
    }
    case Kind::broadcast: {
      const int root = a[0].root;
      for (int r = 0; r < p; ++r)
        if (r != root) mem.copy(a[r].out, a[root].in, size_t(a[0].n));
      break;
    }
    case Kind::barrier: break;
    case Kind::split: {
      std::vector<int> order(p);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int x, int y) {
        if (a[x].color != a[y].color) return a[x].color < a[y].color;
        return a[x].key < a[y].key;  // stable: ties keep rank order
      });
      op.new_group.assign(p, nullptr);
      op.new_rank.assign(p, -1);
      for (size_t s = 0; s < order.size();) {
        size_t e = s;
        while (e < order.size() && a[order[e]].color == a[order[s]].color) ++e;
        if (a[order[s]].color >= 0) {
          std::vector<int> world;
          for (size_t k = s; k < e; ++k) world.push_back(g.world[order[k]]);
          auto ng = std::make_shared<Group>(g.u, std::move(world));
          for (size_t k = s; k < e; ++k) {
            op.new_group[order[k]] = ng;
            op.new_rank[order[k]] = static_cast<int>(k - s);
          }
        }
        s = e;
      }
      break;
    }
  }
  mem.synchronize();
}

// The error, if any, of rank r joining op with args x (mismatched calls between ranks).
std::string mismatch(const Group& g, const CollOp& op, Kind kind, int r, const Args& x) {
  const std::string head = "collective #" + std::to_string(op.seq) + ": rank " + std::to_string(r);
  if (op.kind != kind) return head + " called " + kind_name(kind) + " while another rank called " + kind_name(op.kind);
  if (kind == Kind::broadcast && (x.root < 0 || x.root >= g.size()))
    return head + " called broadcast with root " + std::to_string(x.root) + " outside [0, " + std::to_string(g.size()) +
           ")";
  for (int j = 0; j < g.size(); ++j) {
    if (!op.joined[j]) continue;
    const Args& y = op.args[j];
    if (kind != Kind::barrier && kind != Kind::split && y.n != x.n)
      return head + " called " + kind_name(kind) + " with count " + std::to_string(x.n) + " but rank " +
             std::to_string(j) + " with " + std::to_string(y.n);
    if (kind == Kind::broadcast && y.root != x.root)
      return head + " called broadcast with root " + std::to_string(x.root) + " but rank " + std::to_string(j) +
             " with root " + std::to_string(y.root);
    break;  // every joined rank already agreed with the first
  }
  return "";
}

// Waits until op is done; throws when it failed, the universe failed or a rank it still
// needs has ended. Never throws while op is running (another thread may be copying into
// this rank's buffers). Caller holds lk on g.u->mu.
void wait_coll_locked(Group& g, const CollOp& op, std::unique_lock<std::mutex>& lk) {
  Universe& u = *g.u;
  for (;;) {
    if (op.state == State::done) {
      if (!op.error.empty()) throw CommError(op.error);
      return;
    }
    if (op.state == State::collecting) {
      if (u.failed) throw CommError(aborted_message(u));
      for (int r = 0; r < g.size(); ++r)
        if (!op.joined[r] && u.exited[g.world[r]])
          throw CommError(std::string(kind_name(op.kind)) + ": rank " + std::to_string(r) +
                          " ended without joining this collective");
    }
    u.cv.wait(lk);
  }
}

class CollPending final : public Pending {
 public:
  CollPending(std::shared_ptr<Group> g, std::shared_ptr<CollOp> op, int rank)
      : g_(std::move(g)), op_(std::move(op)), rank_(rank) {}
  void wait() override {
    if (waited_) throw CommError(std::string(kind_name(op_->kind)) + ": wait() called twice");
    waited_ = true;
    std::unique_lock lk(g_->u->mu);
    wait_coll_locked(*g_, *op_, lk);
  }
  // split() reads the results after wait().
  const CollOp& op() const { return *op_; }
  // An operation dropped before wait() may still be copied into buffers that are about to
  // be freed, so the universe fails (nobody starts it any more); one already being copied is
  // waited for.
  ~CollPending() override {
    if (waited_) return;
    std::unique_lock lk(g_->u->mu);
    if (op_->state == State::collecting)
      fail_locked(*g_->u, "rank " + std::to_string(rank_) + " dropped a pending " + kind_name(op_->kind) +
                              " without wait() (did it throw?)");
    g_->u->cv.wait(lk, [&] { return op_->state != State::running; });
  }

 private:
  std::shared_ptr<Group> g_;
  std::shared_ptr<CollOp> op_;
  int rank_;
  bool waited_ = false;
};

class LocalComm final : public Communicator {
 public:
  LocalComm(std::shared_ptr<Group> g, int rank) : g_(std::move(g)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return g_->size(); }

  void all_reduce_sum(float* data, int64_t n) override { start_all_reduce_sum(data, n)->wait(); }
  void all_gather(const void* send, void* recv, int64_t bytes) override {
    check_count("all_gather", bytes);
    start_coll(Kind::all_gather, {send, recv, bytes})->wait();
  }
  void reduce_scatter_sum(const float* send, float* recv, int64_t n) override {
    check_count("reduce_scatter_sum", n);
    start_coll(Kind::reduce_scatter_sum, {send, recv, n})->wait();
  }
  void all_to_all(const void* send, void* recv, int64_t bytes) override { start_all_to_all(send, recv, bytes)->wait(); }
  void send_recv(const void* send, int64_t send_bytes, int dst, void* recv, int64_t recv_bytes, int src) override {
    start_send_recv(send, send_bytes, dst, recv, recv_bytes, src)->wait();
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    check_count("broadcast", bytes);
    Args a{data, data, bytes};
    a.root = root;
    start_coll(Kind::broadcast, a)->wait();
  }
  void barrier() override { start_coll(Kind::barrier, {})->wait(); }

  std::unique_ptr<Pending> start_send_recv(const void* send, int64_t send_bytes, int dst, void* recv,
                                           int64_t recv_bytes, int src) override;
  std::unique_ptr<Pending> start_all_to_all(const void* send, void* recv, int64_t bytes) override {
    check_count("all_to_all", bytes);
    return start_coll(Kind::all_to_all, {send, recv, bytes});
  }
  std::unique_ptr<Pending> start_all_reduce_sum(float* data, int64_t n) override {
    check_count("all_reduce_sum", n);
    return start_coll(Kind::all_reduce_sum, {data, data, n});
  }

  std::unique_ptr<Communicator> split(int color, int key) override;

  void abort(const std::string& why) override {
    std::lock_guard lk(g_->u->mu);
    fail_locked(*g_->u, why);
  }

 private:
  void check_count(const char* what, int64_t n) const {
    if (n < 0) throw CommError(std::string(what) + ": negative count " + std::to_string(n));
  }
  std::unique_ptr<CollPending> start_coll(Kind kind, const Args& a);

  std::shared_ptr<Group> g_;
  int rank_;
  uint64_t next_seq_ = 0;  // this rank's collective counter on this group
};

std::unique_ptr<CollPending> LocalComm::start_coll(Kind kind, const Args& a) {
  Group& g = *g_;
  Universe& u = *g.u;
  std::shared_ptr<CollOp> op;
  {
    std::lock_guard lk(u.mu);
    if (u.failed) throw CommError(aborted_message(u));
    const uint64_t seq = next_seq_++;
    auto it = g.ops.find(seq);
    if (it == g.ops.end()) {
      op = std::make_shared<CollOp>();
      op->kind = kind;
      op->seq = seq;
      op->args.resize(g.size());
      op->joined.assign(g.size(), false);
      g.ops.emplace(seq, op);
    } else {
      op = it->second;
    }
    if (op->error.empty()) op->error = mismatch(g, *op, kind, rank_, a);
    op->args[rank_] = a;
    op->joined[rank_] = true;
    if (++op->arrived < g.size()) return std::make_unique<CollPending>(g_, op, rank_);
    g.ops.erase(seq);
    op->state = op->error.empty() ? State::running : State::done;
    if (op->state == State::done) {
      u.cv.notify_all();
      return std::make_unique<CollPending>(g_, op, rank_);
    }
  }
  // Last to join: do everyone's copying, then publish.
  std::string error;
  try {
    perform(g, *op);
  } catch (const std::exception& e) {
    error = std::string(kind_name(kind)) + " failed: " + e.what();
  }
  {
    std::lock_guard lk(u.mu);
    op->error = error;
    op->state = State::done;
    u.cv.notify_all();
  }
  return std::make_unique<CollPending>(g_, op, rank_);
}

std::unique_ptr<Communicator> LocalComm::split(int color, int key) {
  Args a;
  a.color = color < 0 ? -1 : color;
  a.key = key;
  auto pending = start_coll(Kind::split, a);
  pending->wait();
  const CollOp& op = pending->op();
  if (!op.new_group[rank_]) return nullptr;
  return std::make_unique<LocalComm>(op.new_group[rank_], op.new_rank[rank_]);
}

class P2PPending final : public Pending {
 public:
  P2PPending(std::shared_ptr<Group> g, std::shared_ptr<Half> send, std::shared_ptr<Half> recv, int rank)
      : g_(std::move(g)), send_(std::move(send)), recv_(std::move(recv)), rank_(rank) {}

  void wait() override {
    if (waited_) throw CommError("send_recv: wait() called twice");
    waited_ = true;
    Universe& u = *g_->u;
    std::unique_lock lk(u.mu);
    for (;;) {
      const Half* halves[2] = {send_.get(), recv_.get()};
      bool running = false, all_done = true;
      for (const Half* h : halves) {
        running |= h->state == State::running;
        all_done &= h->state == State::done;
      }
      if (all_done) {
        for (const Half* h : halves)
          if (!h->error.empty()) throw CommError(h->error);
        return;
      }
      if (!running) {  // nobody is copying into our buffers, so we may leave
        if (u.failed) throw CommError(aborted_message(u));
        for (const Half* h : halves) {
          if (h->state != State::collecting) continue;
          const int peer = h->send ? h->dst : h->src;
          if (u.exited[g_->world[peer]]) {
            // Withdraw our other half too, so no live peer matches it after we have left.
            cancel_locked();
            throw CommError("send_recv: rank " + std::to_string(rank_) + (h->send ? " sends to" : " receives from") +
                            " rank " + std::to_string(peer) + ", which ended without matching it");
          }
        }
      }
      u.cv.wait(lk);
    }
  }

  ~P2PPending() override {
    if (waited_) return;
    std::unique_lock lk(g_->u->mu);
    if (send_->state == State::collecting || recv_->state == State::collecting)
      fail_locked(*g_->u,
                  "rank " + std::to_string(rank_) + " dropped a pending send_recv without wait() (did it throw?)");
    g_->u->cv.wait(lk, [&] { return send_->state != State::running && recv_->state != State::running; });
  }

 private:
  // Removes our unmatched halves from the queues. Caller holds the lock.
  void cancel_locked() {
    const int p = g_->size();
    for (const auto& h : {send_, recv_}) {
      if (h->state != State::collecting) continue;
      auto& q = h->send ? g_->sends[h->src * p + h->dst] : g_->recvs[h->src * p + h->dst];
      q.erase(std::remove(q.begin(), q.end(), h), q.end());
      h->state = State::done;
    }
  }

  std::shared_ptr<Group> g_;
  std::shared_ptr<Half> send_, recv_;
  int rank_;
  bool waited_ = false;
};

std::unique_ptr<Pending> LocalComm::start_send_recv(const void* send, int64_t send_bytes, int dst, void* recv,
                                                    int64_t recv_bytes, int src) {
  const int p = size();
  if (dst < 0 || dst >= p || src < 0 || src >= p)
    throw CommError("send_recv: rank " + std::to_string(rank_) + " names dst " + std::to_string(dst) + ", src " +
                    std::to_string(src) + " outside [0, " + std::to_string(p) + ")");
  check_count("send_recv", send_bytes);
  check_count("send_recv", recv_bytes);
  auto s = std::make_shared<Half>();
  s->send = send;
  s->bytes = send_bytes;
  s->src = rank_;
  s->dst = dst;
  auto r = std::make_shared<Half>();
  r->recv = recv;
  r->bytes = recv_bytes;
  r->src = src;
  r->dst = rank_;

  // Pairs (sender half, receiver half) this call matched; copied outside the lock.
  std::vector<std::pair<std::shared_ptr<Half>, std::shared_ptr<Half>>> matched;
  Group& g = *g_;
  Universe& u = *g.u;
  {
    std::lock_guard lk(u.mu);
    if (u.failed) throw CommError(aborted_message(u));
    auto match = [&](const std::shared_ptr<Half>& mine, std::deque<std::shared_ptr<Half>>& theirs,
                     std::deque<std::shared_ptr<Half>>& ours) {
      if (theirs.empty()) {
        ours.push_back(mine);
        return;
      }
      auto other = theirs.front();
      theirs.pop_front();
      auto snd = mine->send ? mine : other;
      auto rcv = mine->send ? other : mine;
      if (snd->bytes != rcv->bytes) {
        snd->error = rcv->error = "send_recv: rank " + std::to_string(snd->src) + " sends " +
                                  std::to_string(snd->bytes) + " bytes to rank " + std::to_string(rcv->dst) +
                                  ", which expects " + std::to_string(rcv->bytes);
        snd->state = rcv->state = State::done;
        return;
      }
      snd->state = rcv->state = State::running;
      matched.emplace_back(snd, rcv);
    };
    match(s, g.recvs[rank_ * p + dst], g.sends[rank_ * p + dst]);
    match(r, g.sends[src * p + rank_], g.recvs[src * p + rank_]);
    u.cv.notify_all();
  }
  if (!matched.empty()) {
    MemOps& mem = *u.mem;
    for (auto& [snd, rcv] : matched) mem.copy(rcv->recv, snd->send, size_t(snd->bytes));
    mem.synchronize();
    std::lock_guard lk(u.mu);
    for (auto& [snd, rcv] : matched) snd->state = rcv->state = State::done;
    u.cv.notify_all();
  }
  return std::make_unique<P2PPending>(g_, std::move(s), std::move(r), rank_);
}

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

bool is_comm_error(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const CommError&) {
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace

void run_local(int n, const std::function<void(Communicator&)>& fn, MemOps* mem) {
  if (n < 1) throw std::invalid_argument("run_local: need at least 1 rank, got " + std::to_string(n));
  auto u = std::make_shared<Universe>();
  u->exited.assign(n, false);
  u->mem = mem ? mem : &host_mem_ops();
  std::vector<int> world(n);
  std::iota(world.begin(), world.end(), 0);
  auto g = std::make_shared<Group>(u, std::move(world));

  std::mutex errors_mu;
  std::vector<std::exception_ptr> errors;  // in the order ranks failed
  auto mark_exited = [&](int r) {
    std::lock_guard lk(u->mu);
    u->exited[r] = true;
    u->cv.notify_all();
  };
  auto body = [&](int r) {
    try {
      LocalComm comm(g, r);
      fn(comm);
    } catch (...) {
      auto e = std::current_exception();
      {
        std::lock_guard lk(errors_mu);
        errors.push_back(e);
      }
      std::lock_guard lk(u->mu);
      fail_locked(*u, "rank " + std::to_string(r) + " failed: " + describe(e));
    }
    mark_exited(r);
  };

  std::vector<std::thread> threads;
  threads.reserve(n - 1);
  for (int r = 1; r < n; ++r) {
    try {
      threads.emplace_back(body, r);
    } catch (...) {
      // Ranks that never started must not be waited for: fail the rest and report why.
      {
        std::lock_guard lk(errors_mu);
        errors.push_back(std::current_exception());
      }
      std::lock_guard lk(u->mu);
      fail_locked(*u, "run_local: could not start the thread of rank " + std::to_string(r));
      for (int q = r; q < n; ++q) u->exited[q] = true;
      break;
    }
  }
  body(0);
  for (auto& t : threads) t.join();

  // The root cause is the first failure that is not a CommError (those are mostly peers
  // being told about it); if all are CommErrors, the first one.
  for (const auto& e : errors)
    if (!is_comm_error(e)) std::rethrow_exception(e);
  if (!errors.empty()) std::rethrow_exception(errors.front());
  // A rank called abort() and every rank still returned: the run did not succeed.
  if (u->failed) throw CommError(aborted_message(*u));
}

}  // namespace autosp::runtime
