// The NCCL communicator: the Communicator over device buffers, one rank per GPU.
//
// Stream-ordered (stream_ordered() is true): every call enqueues its work on the stream given
// at creation and returns; the data is in place when the stream reaches it, not when the call
// returns. start_* enqueue the same way and return a Pending whose wait() does nothing: stream
// order is the completion guarantee, and the caller orders its other streams after this one
// with events (record on this stream, cudaStreamWaitEvent on the consumer). barrier() is the
// exception: it waits on the host until every rank has reached it.
//
// Counts follow comm.h (floats for sums, bytes for data movement); the sums are NCCL's
// (fp32, identical on every rank, in an order NCCL chooses). Unlike the local communicator,
// NCCL cannot detect mismatched calls between ranks (different counts, an unmatched
// send_recv): those hang or corrupt, as in any NCCL program. Any failing NCCL or CUDA call
// throws CommError naming the call, NCCL's error string and its last error message.
//
// abort() is local: it ends this rank's NCCL communicator (ncclCommAbort) and every later
// call throws CommError. Peers find out through the bootstrap communicator (the trainer aborts
// the MPI world, which ends the job). It must not race with another thread's call on this
// communicator (NCCL communicators are not thread-safe).
#pragma once
#include <cuda_runtime.h>

#include <memory>

#include "runtime/comm.h"

namespace autosp::runtime {

// Collective over bootstrap, a host communicator (MPI, or local in tests) whose ranks become
// this communicator's: rank 0 creates NCCL's unique id and bootstrap broadcasts it. The
// caller selects the device first (cudaSetDevice; NCCL refuses two ranks on one GPU): the
// communicator is bound to the device current on the calling thread, and every later call
// runs on that device whatever thread makes it. stream is a stream of that device and must
// outlive the communicator; split() gives the new communicators the same stream.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, cudaStream_t stream);

}  // namespace autosp::runtime
