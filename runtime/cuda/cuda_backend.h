// The CUDA backend: one GPU, bf16 activations with fp32 arithmetic (kernels/cuda), two
// streams. launch() enqueues on the compute stream; collectives run on the communication
// stream, ordered against compute by one event pair per collective instruction (recorded at
// the hand-over and after the collective; see runtime/backend.h). Memory comes from
// cudaMalloc in allocate() only: the executor allocates its arena once, parameters are
// allocated once, and prepare() sizes the kernels' workspace for a whole program up front,
// so a training step allocates nothing (the cuDNN attention workspace grows during the first
// step that builds a graph, then stays).
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "runtime/backend.h"

namespace autosp::runtime {

// device: the CUDA device ordinal this backend (and every thread calling into it) uses.
std::unique_ptr<Backend> make_cuda_backend(int device);

// The communication stream of a backend made by make_cuda_backend (NCCL communicators are
// created on it: runtime/cuda/comm_nccl.h).
cudaStream_t cuda_comm_stream(Backend& cuda_backend);

// Number of CUDA devices (0 when there is none or no driver), and why not when 0.
int cuda_device_count(std::string* why_none = nullptr);

}  // namespace autosp::runtime
