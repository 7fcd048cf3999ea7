// The MPI communicator: ranks are processes (mpirun/srun), on one or many hosts.
//
// Initialisation. mpi_world() initialises MPI once, asking for MPI_THREAD_MULTIPLE: the
// trainer's communication thread issues calls while the main thread issues others, and any
// lower level (SERIALIZED included) would make that undefined behaviour, so a library that
// provides less is refused with the level it did provide. MPI_Finalize runs at process exit.
// Errors come back as codes (MPI_ERRORS_RETURN, inherited by every split communicator) and
// MPI_CHECK turns them into CommError naming the call, MPI's message, file and line.
//
// Results. Collectives map one to one onto MPI's. MPI returns the same reduction result to
// every rank, but the order it adds in is implementation-defined (OpenMPI picks algorithms by
// size and rank count), so sums may differ from the local communicator's rank-order sum in
// the last bits; they are identical across ranks.
//
// Failure. abort() prints the reason and calls MPI_Abort(MPI_COMM_WORLD): mpirun then kills
// every rank, so none hangs in a collective waiting for the failed one. For the same reason a
// process that saw a communication error aborts the job at exit instead of entering
// MPI_Finalize, which would wait for peers that may be stuck.
//
// Sizes. Byte counts above INT_MAX travel as one element of a derived datatype of exactly
// that many bytes; float reductions above INT_MAX elements are split into INT_MAX pieces
// (elementwise, so the result is the same).
//
// A color < 0 in split() means "join no group" (MPI_UNDEFINED); that rank gets nullptr.
// C API only: OpenMPI's and MPICH's deprecated C++ bindings do not compile warning-free.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "runtime/comm.h"

namespace autosp::runtime {
namespace {

// Set once this process has seen a communication error: its peers may be blocked in a call
// it will never make, so exiting must abort the job rather than finalize.
std::atomic<bool> g_comm_failed{false};

[[noreturn]] void throw_comm(const std::string& msg) {
  g_comm_failed = true;
  throw CommError(msg);
}

std::string mpi_error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return "MPI error code " + std::to_string(rc);
  return std::string(buf, len);
}

void check_mpi(int rc, const char* call, const char* file, int line) {
  if (rc == MPI_SUCCESS) return;
  throw_comm(std::string(call) + " failed at " + file + ":" + std::to_string(line) + ": " + mpi_error_string(rc));
}

#define MPI_CHECK(call) check_mpi((call), #call, __FILE__, __LINE__)

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
  }
  return "an unknown thread level";
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (g_comm_failed) {
    std::fprintf(stderr, "autosp: a communication call failed in this process; aborting the MPI job\n");
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
}

// Initialises MPI on first call (thread-safe: a function-local static).
void ensure_mpi() {
  static const bool ready = [] {
    int initialized = 0;
    MPI_Initialized(&initialized);
    int provided = MPI_THREAD_SINGLE;
    if (initialized) {
      // Someone else initialised MPI; they own MPI_Finalize.
      MPI_Query_thread(&provided);
    } else {
      // The communication thread shares cores with compute; Open MPI's progress loop spins by
      // default, which on a fully used machine steals the compute thread's core (measured: an
      // overlapped step 6% slower than a serial one on 2 cores). Yield instead, unless the
      // user chose otherwise.
      setenv("OMPI_MCA_mpi_yield_when_idle", "1", /*overwrite=*/0);
      MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
      std::atexit(finalize_at_exit);
    }
    if (provided < MPI_THREAD_MULTIPLE)
      throw_comm(std::string("MPI provides ") + thread_level_name(provided) +
                 ", but autosp needs MPI_THREAD_MULTIPLE (its communication thread calls MPI while the main "
                 "thread does); use an MPI built with thread support");
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    return true;
  }();
  (void)ready;
}

// count elements of datatype describing `bytes` contiguous bytes; owns a derived type when
// bytes exceeds INT_MAX (freed on destruction; MPI lets pending operations using it finish).
class ByteType {
 public:
  explicit ByteType(int64_t bytes) {
    if (bytes <= INT_MAX) {
      count = static_cast<int>(bytes);
      return;
    }
    // q blocks of 2^30 bytes, then the remainder; one element spans exactly `bytes`.
    constexpr int64_t kBlock = int64_t(1) << 30;
    const int64_t q = bytes / kBlock, r = bytes % kBlock;
    MPI_Datatype block, blocks;
    MPI_CHECK(MPI_Type_contiguous(static_cast<int>(kBlock), MPI_BYTE, &block));
    MPI_CHECK(MPI_Type_contiguous(static_cast<int>(q), block, &blocks));
    MPI_Type_free(&block);
    if (r == 0) {
      type = blocks;
    } else {
      int lengths[2] = {1, static_cast<int>(r)};
      MPI_Aint offsets[2] = {0, static_cast<MPI_Aint>(q * kBlock)};
      MPI_Datatype types[2] = {blocks, MPI_BYTE};
      MPI_CHECK(MPI_Type_create_struct(2, lengths, offsets, types, &type));
      MPI_Type_free(&blocks);
    }
    MPI_CHECK(MPI_Type_commit(&type));
    count = 1;
    owned_ = true;
  }
  ~ByteType() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Type_free(&type);
  }
  ByteType(const ByteType&) = delete;
  ByteType& operator=(const ByteType&) = delete;

  int count = 0;
  MPI_Datatype type = MPI_BYTE;

 private:
  bool owned_ = false;
};

void check_count(const char* what, int64_t n) {
  if (n < 0) throw_comm(std::string(what) + ": negative count " + std::to_string(n));
}

// Requests of one started operation; wait() completes them all.
class MpiPending final : public Pending {
 public:
  MpiPending(std::string what, int rank) : what_(std::move(what)), rank_(rank) {}

  std::vector<MPI_Request> requests;
  // send_recv: which request is the receive and how many bytes it must deliver.
  int recv_index = -1;
  int64_t recv_bytes = 0;
  int src = -1;
  std::unique_ptr<ByteType> recv_type;

  void wait() override {
    if (waited_) throw_comm(what_ + ": wait() called twice");
    waited_ = true;
    std::vector<MPI_Status> statuses(requests.size());
    const int rc = MPI_Waitall(static_cast<int>(requests.size()), requests.data(), statuses.data());
    if (rc == MPI_ERR_IN_STATUS) {
      for (const auto& s : statuses)
        if (s.MPI_ERROR != MPI_SUCCESS && s.MPI_ERROR != MPI_ERR_PENDING)
          throw_comm(what_ + ": " + mpi_error_string(s.MPI_ERROR));
    }
    check_mpi(rc, "MPI_Waitall", __FILE__, __LINE__);
    if (recv_index >= 0) {
      MPI_Count got = 0;
      MPI_CHECK(MPI_Get_elements_x(&statuses[recv_index], recv_type->type, &got));
      if (got != recv_bytes)
        throw_comm(what_ + ": rank " + std::to_string(rank_) + " received " + std::to_string(got) +
                   " bytes from rank " + std::to_string(src) + ", expected " + std::to_string(recv_bytes));
    }
  }

  // Dropping unfinished requests would let MPI write into buffers about to be freed; the
  // job cannot safely go on, so it is aborted.
  ~MpiPending() override {
    if (waited_ || requests.empty()) return;
    int finalized = 0, done = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE);
    if (done) return;
    std::fprintf(stderr, "autosp: rank %d dropped a pending %s without wait()%s; aborting the MPI job\n", rank_,
                 what_.c_str(), std::uncaught_exceptions() > 0 ? " while an exception was propagating" : "");
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

 private:
  std::string what_;
  int rank_;
  bool waited_ = false;
};

class MpiComm final : public Communicator {
 public:
  MpiComm(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  ~MpiComm() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Comm_free(&comm_);
  }
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* data, int64_t n) override {
    check_count("all_reduce_sum", n);
    for (int64_t off = 0; off < n; off += INT_MAX)
      MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data + off, piece(n, off), MPI_FLOAT, MPI_SUM, comm_));
  }

  void all_gather(const void* send, void* recv, int64_t bytes) override {
    check_count("all_gather", bytes);
    ByteType t(bytes);
    MPI_CHECK(MPI_Allgather(send, t.count, t.type, recv, t.count, t.type, comm_));
  }

  void reduce_scatter_sum(const float* send, float* recv, int64_t n) override {
    check_count("reduce_scatter_sum", n);
    // MPI_SUM needs a predefined type, so no derived-type trick; chunks this large (8 GiB
    // per rank) are not a case we have.
    if (n > INT_MAX) throw_comm("reduce_scatter_sum: " + std::to_string(n) + " elements per rank exceed INT_MAX");
    MPI_CHECK(MPI_Reduce_scatter_block(send, recv, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_));
  }

  void all_to_all(const void* send, void* recv, int64_t bytes) override {
    check_count("all_to_all", bytes);
    ByteType t(bytes);
    MPI_CHECK(MPI_Alltoall(send, t.count, t.type, recv, t.count, t.type, comm_));
  }

  void send_recv(const void* send, int64_t send_bytes, int dst, void* recv, int64_t recv_bytes, int src) override {
    check_peers(dst, src);
    check_count("send_recv", send_bytes);
    check_count("send_recv", recv_bytes);
    ByteType st(send_bytes), rt(recv_bytes);
    MPI_Status status;
    MPI_CHECK(MPI_Sendrecv(send, st.count, st.type, dst, kTag, recv, rt.count, rt.type, src, kTag, comm_, &status));
    MPI_Count got = 0;
    MPI_CHECK(MPI_Get_elements_x(&status, rt.type, &got));
    if (got != recv_bytes)
      throw_comm("send_recv: rank " + std::to_string(rank_) + " received " + std::to_string(got) + " bytes from rank " +
                 std::to_string(src) + ", expected " + std::to_string(recv_bytes));
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    check_count("broadcast", bytes);
    ByteType t(bytes);
    MPI_CHECK(MPI_Bcast(data, t.count, t.type, root, comm_));
  }

  void barrier() override { MPI_CHECK(MPI_Barrier(comm_)); }

  std::unique_ptr<Pending> start_send_recv(const void* send, int64_t send_bytes, int dst, void* recv,
                                           int64_t recv_bytes, int src) override {
    check_peers(dst, src);
    check_count("send_recv", send_bytes);
    check_count("send_recv", recv_bytes);
    auto p = std::make_unique<MpiPending>("send_recv", rank_);
    // The pending operation keeps the receive type: MPI_Get_elements_x reads it after the wait.
    p->recv_type = std::make_unique<ByteType>(recv_bytes);
    const ByteType& rt = *p->recv_type;
    ByteType st(send_bytes);
    p->requests.resize(2, MPI_REQUEST_NULL);
    // Receive posted first so a message already in flight lands in place, not in a buffer.
    MPI_CHECK(MPI_Irecv(recv, rt.count, rt.type, src, kTag, comm_, &p->requests[0]));
    MPI_CHECK(MPI_Isend(send, st.count, st.type, dst, kTag, comm_, &p->requests[1]));
    p->recv_index = 0;
    p->recv_bytes = recv_bytes;
    p->src = src;
    return p;
  }

  std::unique_ptr<Pending> start_all_to_all(const void* send, void* recv, int64_t bytes) override {
    check_count("all_to_all", bytes);
    auto p = std::make_unique<MpiPending>("all_to_all", rank_);
    ByteType t(bytes);
    p->requests.resize(1, MPI_REQUEST_NULL);
    MPI_CHECK(MPI_Ialltoall(send, t.count, t.type, recv, t.count, t.type, comm_, &p->requests[0]));
    return p;
  }

  std::unique_ptr<Pending> start_all_reduce_sum(float* data, int64_t n) override {
    check_count("all_reduce_sum", n);
    auto p = std::make_unique<MpiPending>("all_reduce_sum", rank_);
    for (int64_t off = 0; off < n; off += INT_MAX) {
      p->requests.push_back(MPI_REQUEST_NULL);
      MPI_CHECK(
          MPI_Iallreduce(MPI_IN_PLACE, data + off, piece(n, off), MPI_FLOAT, MPI_SUM, comm_, &p->requests.back()));
    }
    return p;
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm sub = MPI_COMM_NULL;
    MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub));
    if (sub == MPI_COMM_NULL) return nullptr;
    return std::make_unique<MpiComm>(sub, /*owned=*/true);
  }

  void abort(const std::string& why) override {
    int world_rank = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    std::fprintf(stderr, "autosp: rank %d aborting the MPI job: %s\n", world_rank, why.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);  // MPI_Abort does not return; if a broken MPI lets it, still never hang
  }

 private:
  static constexpr int kTag = 0x5e4d;  // send_recv's tag; same tag keeps messages in order

  static int piece(int64_t n, int64_t off) { return static_cast<int>(std::min<int64_t>(INT_MAX, n - off)); }

  void check_peers(int dst, int src) const {
    if (dst < 0 || dst >= size_ || src < 0 || src >= size_)
      throw_comm("send_recv: rank " + std::to_string(rank_) + " names dst " + std::to_string(dst) + ", src " +
                 std::to_string(src) + " outside [0, " + std::to_string(size_) + ")");
  }

  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

// The first of `names` that is set, parsed as an integer; 0 when none is set.
long env_int(std::initializer_list<const char*> names) {
  for (const char* name : names)
    if (const char* v = std::getenv(name)) return std::strtol(v, nullptr, 10);
  return 0;
}

}  // namespace

std::unique_ptr<Communicator> mpi_world() {
  ensure_mpi();
  return std::make_unique<MpiComm>(MPI_COMM_WORLD, /*owned=*/false);
}

bool launched_by_mpi() {
  // Launchers' environment variables; MPI itself is not initialised here (that would make a
  // plain single-process run depend on a working MPI installation).
  if (env_int({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"}) > 1) return true;
  // PMIx (srun --mpi=pmix) publishes the rank, not the size; the step's task count is Slurm's.
  if (std::getenv("PMIX_RANK") || std::getenv("PMI_RANK")) return env_int({"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"}) > 1;
  return false;
}

}  // namespace autosp::runtime
