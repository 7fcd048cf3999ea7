// Communicator: the collectives sequence parallelism and data parallelism need. Implementations:
// MPI (processes on one or many hosts, host buffers; comm_mpi.cc), local (ranks as threads
// of one process, host or device buffers; comm_local.cc), used by fast tests and for several
// ranks sharing one device, and NCCL (device buffers, stream-ordered;
// runtime/cuda/comm_nccl.h). All give the same results, including sub-groups from split(),
// except that MPI and NCCL add sums in an order of their choosing (last bits may differ).
//
// Conventions: counts are elements (float collectives) or bytes (data movement); chunk i of
// a buffer is the i-th of size() equal consecutive pieces; results are in rank order.
// A failed peer (a rank that died or aborted) makes every waiting call throw CommError, so
// no rank hangs (NCCL relies on its bootstrap communicator for this: comm_nccl.h).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

namespace autosp::runtime {

struct CommError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An operation started but not finished; wait() completes it (at most once).
class Pending {
 public:
  virtual ~Pending() = default;
  virtual void wait() = 0;
};

class MemOps;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // True when calls only enqueue work on a device stream and return (NCCL): results are
  // ready in stream order, not when a call or wait() returns. False: a blocking call and
  // wait() return with the data in place.
  virtual bool stream_ordered() const { return false; }

  // data[n] := Σ over ranks of data[n] (identical result on every rank, summed in rank order).
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  // recv[size() * bytes] := the send[bytes] of every rank, in rank order.
  virtual void all_gather(const void* send, void* recv, int64_t bytes) = 0;
  // recv[n] := Σ over ranks of chunk rank() of their send[size() * n].
  virtual void reduce_scatter_sum(const float* send, float* recv, int64_t n) = 0;
  // Chunk j of send[size() * bytes] goes to rank j; chunk i of recv comes from rank i.
  virtual void all_to_all(const void* send, void* recv, int64_t bytes) = 0;
  // Sends send[send_bytes] to rank dst and receives recv[recv_bytes] from rank src, together
  // (a ring step: dst = rank+1, src = rank-1).
  virtual void send_recv(const void* send, int64_t send_bytes, int dst, void* recv, int64_t recv_bytes,
                         int src) = 0;
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;

  // Asynchronous forms for overlap: the buffers must stay untouched until wait().
  virtual std::unique_ptr<Pending> start_send_recv(const void* send, int64_t send_bytes, int dst, void* recv,
                                                   int64_t recv_bytes, int src) = 0;
  virtual std::unique_ptr<Pending> start_all_to_all(const void* send, void* recv, int64_t bytes) = 0;
  virtual std::unique_ptr<Pending> start_all_reduce_sum(float* data, int64_t n) = 0;

  // The ranks passing the same color form a new communicator, ordered by key (then by rank).
  // Collective over this communicator.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  // Makes every rank's pending and future calls fail (a rank that hit an error calls this
  // before exiting, so the others stop instead of hanging).
  virtual void abort(const std::string& why) = 0;
};

// MPI_COMM_WORLD, initialised with MPI_THREAD_MULTIPLE (a communication thread issues calls
// while the main thread computes). Calls MPI_Init on first use; MPI_Finalize at exit.
std::unique_ptr<Communicator> mpi_world();
// True when this process was started by mpirun/srun with more than one rank.
bool launched_by_mpi();

// Runs fn(comm) on n threads, each with its own rank of an n-rank local communicator.
// Rethrows the first exception a rank raised, after all threads ended (a rank that throws
// aborts the group so its peers end too). mem moves the bytes between ranks' buffers (null:
// host memory): with a device MemOps every buffer handed to the communicators is a device
// pointer, copies go through mem, and sums are staged through host memory and added in the
// same order, so results are bit-identical to host buffers'. mem's copies must be callable
// from any rank's thread at once (CudaMemOps's are); its scratch is not used. Calls still
// complete on return (the communicator is not stream-ordered): each operation ends with
// mem->synchronize().
void run_local(int n, const std::function<void(Communicator&)>& fn, MemOps* mem = nullptr);

}  // namespace autosp::runtime
