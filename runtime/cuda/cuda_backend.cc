// CudaBackend (cuda_backend.h): maps each instruction to the kernels in kernels/cuda. As in
// the CPU backend, the only logic here is reading sizes out of slot shapes and attributes,
// and picking the kernel instantiation by dtype (f32 or bf16; attention, the fused
// cross-entropy and bf16 GEMMs want bf16, which is what train.dtype = bf16 programs give
// them).
#include "runtime/cuda/cuda_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "ir/registry.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/kernels.h"
#include "runtime/cuda/cuda_mem_ops.h"
#include "runtime/cuda/device_scope.h"
#include "runtime/cuda/ring_attention_cuda.h"
#include "runtime/collective_exec.h"
#include "runtime/op_args.h"

namespace autosp::runtime {

namespace {

namespace k = kernels::cuda;
using ir::Op;
using k::bf16;

// Device bytes held by this process's CUDA backends (several ranks of a local test share a
// process and a GPU): the peak is what the trainer reports as memory.
std::atomic<int64_t> g_current{0}, g_peak{0};

void count(int64_t delta) {
  const int64_t now = g_current.fetch_add(delta) + delta;
  for (int64_t seen = g_peak.load(); now > seen && !g_peak.compare_exchange_weak(seen, now);) {
  }
}

// AUTOSP_CUDA_SYNC=1 (read once): after every instruction its stream is synchronised and
// checked, so a kernel fault names the instruction that caused it. Without it, an
// asynchronous error surfaces at some later CUDA call, maybe on the other thread, with only
// that call's file and line. For chasing a fault; it serialises the step.
bool sync_each_instruction() {
  static const bool on = [] {
    const char* e = std::getenv("AUTOSP_CUDA_SYNC");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return on;
}

// Synchronises s and fails, naming `what`, if it or any earlier launch reported an error.
void check_synchronised(cudaStream_t s, const std::string& what) {
  const cudaError_t e = cudaStreamSynchronize(s), launch = cudaGetLastError();
  const cudaError_t bad = e != cudaSuccess ? e : launch;
  AUTOSP_CHECK(bad == cudaSuccess) << "cuda backend: " << what << " failed (AUTOSP_CUDA_SYNC): "
                                   << cudaGetErrorString(bad);
}

std::string describe(const ir::Instr& ins) {
  return "instruction \"" + (ins.label.empty() ? std::string(ir::op_name(ins.op)) : ins.label) + "\"";
}

template <class T>
T* P(const Tensor& t) {
  return static_cast<T*>(const_cast<void*>(t.raw()));
}
const int32_t* I(const Tensor& t) { return t.data<int32_t>(); }

// Calls f(T{}) with T the C++ type of a float dtype.
template <class F>
void by_dtype(DType t, const ir::Instr& ins, F&& f) {
  if (t == DType::f32)
    f(float{});
  else if (t == DType::bf16)
    f(bf16{});
  else
    AUTOSP_CHECK(false) << "cuda backend: " << ir::op_name(ins.op) << " on " << dtype_name(t);
}

void require_bf16(const ir::Instr& ins, const Tensor& t) {
  AUTOSP_CHECK(t.dtype() == DType::bf16) << "cuda backend: " << ir::op_name(ins.op)
                                         << " runs in bf16 (train.dtype = bf16), got " << dtype_name(t.dtype());
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    CUDA_CHECK(cudaSetDevice(device_));
    // Non-blocking: neither stream synchronises with the legacy default stream, which the
    // local communicator's synchronous copies and library internals may use.
    CUDA_CHECK(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&comm_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&comm_done_, cudaEventDisableTiming));
    gemm_ = std::make_unique<k::GemmContext>();
    attention_ = std::make_unique<k::AttentionContext>();
    attention_->on_resize = count;  // cuDNN's workspace and the fallback's scratch sit beside the arena
    // Both collectives' byte movers are on the communication stream: a collective's packing,
    // its communicator call and its unpacking then follow one another in stream order
    // whichever thread issues them, and the event pair around them covers all three.
    comm_mem_ = std::make_unique<CudaMemOps>(comm_, /*synchronous=*/false);
    compute_thread_mem_ = std::make_unique<CudaMemOps>(comm_, /*synchronous=*/false);
    // Ring attention runs on the communication stream with its communicator (ring_attention_cuda.h),
    // issued by the communication thread or the compute thread: one object per thread.
    for (auto& r : ring_) r = std::make_unique<CudaRingAttention>(comm_, count);
    CUDA_CHECK(cudaMalloc(&norm_partials_, sizeof(float) * kMaxNormTensors));
    CUDA_CHECK(cudaMalloc(&sum_squares_scratch_, sizeof(double) * k::kSumSquaresScratch));
  }

  // A step's segment ids are scanned into cuDNN's document tables once per attention context:
  // the backend's and each ring attention's (its own block runs as packed documents).
  void begin_run() override {
    attention_->begin_step();
    for (auto& r : ring_) r->attention().begin_step();
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
    cudaDeviceSynchronize();
    for (cudaEvent_t e : handed_over_) cudaEventDestroy(e);
    for (cudaEvent_t e : issued_) cudaEventDestroy(e);
    comm_mem_.reset();
    compute_thread_mem_.reset();
    for (auto& r : ring_) r.reset();
    gemm_.reset();
    attention_.reset();
    cudaFree(workspace_);
    count(-int64_t(workspace_bytes_));
    cudaFree(norm_partials_);
    cudaFree(sum_squares_scratch_);
    cudaEventDestroy(comm_done_);
    cudaStreamDestroy(compute_);
    cudaStreamDestroy(comm_);
  }

  const char* name() const override { return "cuda"; }
  Device device() const override { return Device::cuda; }
  std::string device_name() const override {
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, device_));
    return p.name;
  }
  cudaStream_t comm_stream() const { return comm_; }

  std::shared_ptr<Storage> allocate(size_t bytes) override {
    DeviceScope on(device_);
    void* p = nullptr;
    if (bytes > 0) {
      const cudaError_t e = cudaMalloc(&p, bytes);
      AUTOSP_CHECK(e == cudaSuccess) << "cuda backend: allocating " << bytes << " bytes on device " << device_
                                     << ": " << cudaGetErrorString(e) << " (" << (g_current.load() >> 20)
                                     << " MiB held by autosp already)";
      count(int64_t(bytes));
    }
    // The size is not recoverable from the pointer in release(): keep it in a side table.
    std::lock_guard<std::mutex> l(sizes_mu());
    sizes()[p] = bytes;
    return Storage::adopt(p, bytes, Device::cuda, free_block);
  }

  // Pinned, so the copy engine moves offloaded activations asynchronously on the
  // communication stream (pageable memory would make each copy synchronous). Not device
  // memory: not counted in the device peak.
  std::shared_ptr<Storage> allocate_host(size_t bytes) override {
    DeviceScope on(device_);
    void* p = nullptr;
    if (bytes > 0) {
      const cudaError_t e = cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
      AUTOSP_CHECK(e == cudaSuccess) << "cuda backend: pinning " << bytes << " bytes of host memory for offloaded "
                                     << "activations: " << cudaGetErrorString(e);
    }
    return Storage::adopt(p, bytes, Device::host, [](void* q) { cudaFreeHost(q); });
  }

  void prepare(const ir::Program& p) override {
    DeviceScope on(device_);
    size_t need = 0;
    for (const ir::Instr& ins : p.instrs) need = std::max(need, workspace_bytes(p, ins));
    if (need > workspace_bytes_) {
      CUDA_CHECK(cudaDeviceSynchronize());  // the old workspace may still be in use
      CUDA_CHECK(cudaFree(workspace_));
      workspace_ = nullptr;
      const cudaError_t e = cudaMalloc(&workspace_, need);
      AUTOSP_CHECK(e == cudaSuccess) << "cuda backend: kernel workspace of " << need << " bytes: "
                                     << cudaGetErrorString(e);
      count(int64_t(need) - int64_t(workspace_bytes_));
      workspace_bytes_ = need;
    }
    // One event pair per instruction index, created here so that the two threads calling
    // the comm_* hooks never resize the vectors.
    while (handed_over_.size() < p.instrs.size()) {
      cudaEvent_t a, b;
      CUDA_CHECK(cudaEventCreateWithFlags(&a, cudaEventDisableTiming));
      CUDA_CHECK(cudaEventCreateWithFlags(&b, cudaEventDisableTiming));
      handed_over_.push_back(a);
      issued_.push_back(b);
    }
  }

  MemOps& mem(ir::Stream s) override { return s == ir::Stream::comm ? *comm_mem_ : *compute_thread_mem_; }

  void comm_enqueued(int index) override {
    DeviceScope on(device_);
    CUDA_CHECK(cudaEventRecord(handed_over_[size_t(index)], compute_));
  }
  void comm_begin(int index, bool host_reads) override {
    DeviceScope on(device_);
    CUDA_CHECK(cudaStreamWaitEvent(comm_, handed_over_[size_t(index)], 0));
    // A blocking communicator reads (and writes) the buffers from the host at once. Waiting
    // for the hand-over alone is not enough: the inputs may be the output of an earlier
    // collective whose unpacking is still queued on this stream (an in-place all_reduce or a
    // send_recv calls the communicator without synchronising its MemOps first). Draining
    // the stream, which now waits for the hand-over too, covers both.
    if (host_reads) CUDA_CHECK(cudaStreamSynchronize(comm_));
  }
  void comm_end(int index) override {
    DeviceScope on(device_);
    CUDA_CHECK(cudaEventRecord(issued_[size_t(index)], comm_));
    if (sync_each_instruction()) check_synchronised(comm_, "communication instruction " + std::to_string(index));
  }
  void compute_waits(int index) override {
    DeviceScope on(device_);
    CUDA_CHECK(cudaStreamWaitEvent(compute_, issued_[size_t(index)], 0));
  }
  bool run_ring_attention(const Mesh& mesh, const ir::Instr& ins, std::span<const Tensor> in,
                          std::span<Tensor> out) override {
    DeviceScope on(device_);
    require_bf16(ins, in[0]);
    CudaRingAttention& r = *ring_[ins.stream == ir::Stream::comm ? 0 : 1];
    Communicator& ring = ring_communicator(mesh, ins);
    const RingAttentionArgs a = ring_attention_args(ins, in);
    if (ins.op == Op::ring_attention)
      r.forward(ring, a, P<bf16>(in[0]), P<bf16>(in[1]), P<bf16>(in[2]), P<bf16>(out[0]), P<float>(out[1]));
    else
      r.backward(ring, a, P<bf16>(in[0]), P<bf16>(in[1]), P<bf16>(in[2]), P<bf16>(in[3]), P<float>(in[4]),
                 P<bf16>(in[5]), P<bf16>(out[0]), P<bf16>(out[1]), P<bf16>(out[2]));
    if (sync_each_instruction()) {
      check_synchronised(r.work_stream(), describe(ins));
      check_synchronised(r.stream(), describe(ins));
    }
    return true;
  }

  void synchronize() override {
    DeviceScope on(device_);
    CUDA_CHECK(cudaStreamSynchronize(comm_));
    CUDA_CHECK(cudaStreamSynchronize(compute_));
  }

  // These three are ordered after everything issued before on either stream (backend.h): the
  // compute stream first waits for the communication stream's work, whose collectives may
  // still write (or read) the buffer.
  void upload(void* dst, const void* host, size_t bytes) override {
    if (bytes == 0) return;
    DeviceScope on(device_);
    after_comm();
    CUDA_CHECK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, compute_));
    CUDA_CHECK(cudaStreamSynchronize(compute_));  // the host buffer may go away on return
  }
  void download(void* host, const void* src, size_t bytes) override {
    if (bytes == 0) return;
    DeviceScope on(device_);
    after_comm();
    CUDA_CHECK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, compute_));
    CUDA_CHECK(cudaStreamSynchronize(compute_));
  }

  void fill_zero(void* dst, size_t bytes) override {
    if (bytes == 0) return;
    DeviceScope on(device_);
    after_comm();
    CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, compute_));  // the step's kernels follow on this stream
  }

  // Each tensor's Σx² lands in its own float on the device (sum_squares accumulates in double
  // and rounds once); one download, then the sum over tensors in double, in order.
  double sum_squares(std::span<const Tensor> xs) override {
    DeviceScope on(device_);
    double total = 0;
    std::vector<float> host(kMaxNormTensors);
    for (size_t begin = 0; begin < xs.size(); begin += kMaxNormTensors) {
      const size_t n = std::min(xs.size() - begin, size_t(kMaxNormTensors));
      for (size_t i = 0; i < n; ++i) {
        const Tensor& x = xs[begin + i];
        AUTOSP_CHECK(x.dtype() == DType::f32) << "sum_squares: f32 tensors only";
        k::sum_squares(x.data<float>(), x.numel(), norm_partials_ + i, sum_squares_scratch_, compute_);
      }
      download(host.data(), norm_partials_, n * sizeof(float));
      for (size_t i = 0; i < n; ++i) total += double(host[i]);
    }
    return total;
  }

  void adamw(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, const AdamWStep& a) override {
    DeviceScope on(device_);
    k::adamw_step(p.data<float>(), nullptr, g.data<float>(), m.data<float>(), v.data<float>(), p.numel(), a.lr,
                  a.beta1, a.beta2, a.eps, a.weight_decay, a.step, a.grad_scale, compute_);
  }

  int64_t peak_bytes() const override { return g_peak.load(); }

  void launch(const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out) override {
    DeviceScope on(device_);
    issue(ins, in, out);
    if (sync_each_instruction()) check_synchronised(compute_, describe(ins));
  }

 private:
  void issue(const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out) {
    cudaStream_t s = compute_;
    switch (ins.op) {
      case Op::embedding:
        return by_dtype(in[1].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          k::embedding_forward<T>(I(in[0]), P<T>(in[1]), P<T>(out[0]), in[0].numel(), in[1].shape()[1], s);
        });
      case Op::embedding_backward:
        return by_dtype(in[1].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          k::embedding_backward<T>(I(in[0]), P<T>(in[1]), P<T>(out[0]), in[0].numel(), out[0].shape()[0],
                                   out[0].shape()[1], workspace_, s);
        });
      case Op::matmul: {
        const auto& a = std::get<ir::MatmulAttrs>(ins.attrs);
        const Shape& sa = in[0].shape();
        const Shape& sb = in[1].shape();
        const int64_t m = out[0].shape()[-2], n = out[0].shape()[-1];
        const int64_t kk = a.trans_a ? sa[-2] : sa[-1];
        const int64_t batch = m * n == 0 ? 0 : out[0].numel() / (m * n);  // an empty GEMM is a no-op
        // An accumulated X (fuse_accumulate) is cuBLASLt's C with beta = 1, out its D.
        const bool acc = in.size() == 3;
        if (in[0].dtype() == DType::bf16)
          k::matmul(*gemm_, P<bf16>(in[0]), P<bf16>(in[1]), P<bf16>(out[0]), batch, m, n, kk, a.trans_a, a.trans_b,
                    sb.rank() == 2, s, 1.0f, acc ? 1.0f : 0.0f, acc ? P<bf16>(in[2]) : nullptr);
        else
          k::matmul(*gemm_, P<float>(in[0]), P<float>(in[1]), P<float>(out[0]), batch, m, n, kk, a.trans_a,
                    a.trans_b, sb.rank() == 2, s, 1.0f, acc ? 1.0f : 0.0f, acc ? P<float>(in[2]) : nullptr);
        return;
      }
      case Op::add: return binary(k::BinaryOp::add, ins, in, out);
      case Op::sub: return binary(k::BinaryOp::sub, ins, in, out);
      case Op::mul: return binary(k::BinaryOp::mul, ins, in, out);
      case Op::div: return binary(k::BinaryOp::div, ins, in, out);
      case Op::scale:
        return by_dtype(in[0].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          k::scale<T>(P<T>(in[0]), P<T>(out[0]), in[0].numel(), std::get<ir::ScaleAttrs>(ins.attrs).scale, s);
        });
      case Op::rms_norm:
        return by_norm_types(ins, in, [&](auto t, auto w) {
          using T = decltype(t);
          using W = decltype(w);
          k::rms_norm_forward<T, W>(P<T>(in[0]), P<W>(in[1]), P<T>(out[0]), rows_of(in[0].shape()),
                                    in[0].shape()[-1], std::get<ir::NormAttrs>(ins.attrs).eps, s);
        });
      case Op::rms_norm_backward:
        return by_norm_types(ins, in, [&](auto t, auto w) {
          using T = decltype(t);
          using W = decltype(w);
          k::rms_norm_backward<T, W>(P<T>(in[0]), P<W>(in[1]), P<T>(in[2]), P<T>(out[0]), P<W>(out[1]),
                                     static_cast<float*>(workspace_), rows_of(in[0].shape()), in[0].shape()[-1],
                                     std::get<ir::NormAttrs>(ins.attrs).eps, s);
        });
      case Op::layer_norm:
        return by_norm_types(ins, in, [&](auto t, auto w) {
          using T = decltype(t);
          using W = decltype(w);
          k::layer_norm_forward<T, W>(P<T>(in[0]), P<W>(in[1]), P<W>(in[2]), P<T>(out[0]), rows_of(in[0].shape()),
                                      in[0].shape()[-1], std::get<ir::NormAttrs>(ins.attrs).eps, s);
        });
      case Op::layer_norm_backward:
        return by_norm_types(ins, in, [&](auto t, auto w) {
          using T = decltype(t);
          using W = decltype(w);
          k::layer_norm_backward<T, W>(P<T>(in[0]), P<W>(in[1]), P<T>(in[2]), P<T>(out[0]), P<W>(out[1]),
                                       P<W>(out[2]), static_cast<float*>(workspace_), rows_of(in[0].shape()),
                                       in[0].shape()[-1], std::get<ir::NormAttrs>(ins.attrs).eps, s);
        });
      case Op::rope:
        return by_dtype(in[0].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          const auto& a = std::get<ir::RopeAttrs>(ins.attrs);
          const Shape& x = in[0].shape();
          k::rope<T>(P<T>(in[0]), I(in[1]), P<T>(out[0]), x[0], x[1], x[2], x[3], a.theta, a.inverse, s);
        });
      case Op::silu:
        return by_dtype(in[0].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          k::silu_forward<T>(P<T>(in[0]), P<T>(out[0]), in[0].numel(), s);
        });
      case Op::silu_backward:
        return by_dtype(in[0].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          k::silu_backward<T>(P<T>(in[0]), P<T>(in[1]), P<T>(out[0]), in[0].numel(), s);
        });
      case Op::gelu:
        return by_dtype(in[0].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          k::gelu_forward<T>(P<T>(in[0]), P<T>(out[0]), in[0].numel(), s);
        });
      case Op::gelu_backward:
        return by_dtype(in[0].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          k::gelu_backward<T>(P<T>(in[0]), P<T>(in[1]), P<T>(out[0]), in[0].numel(), s);
        });
      case Op::swiglu:
        return by_dtype(in[0].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          k::swiglu_forward<T>(P<T>(in[0]), P<T>(in[1]), P<T>(out[0]), in[0].numel(), s);
        });
      case Op::swiglu_backward:
        return by_dtype(in[0].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          k::swiglu_backward<T>(P<T>(in[0]), P<T>(in[1]), P<T>(in[2]), P<T>(out[0]), P<T>(out[1]), in[0].numel(), s);
        });
      case Op::reshape:  // only reaches here when the result must be a copy (see lower)
        if (out[0].raw() != in[0].raw())
          CUDA_CHECK(cudaMemcpyAsync(out[0].raw(), in[0].raw(), in[0].nbytes(), cudaMemcpyDeviceToDevice, s));
        return;
      case Op::permute: {
        const auto& perm64 = std::get<ir::PermuteAttrs>(ins.attrs).perm;
        const std::vector<int> perm(perm64.begin(), perm64.end());
        k::permute(in[0].raw(), out[0].raw(), in[0].shape().dims(), perm, int64_t(dtype_size(in[0].dtype())), s);
        return;
      }
      case Op::attention:
        require_bf16(ins, in[0]);
        k::attention_forward(*attention_, attention_args<k::AttentionArgs>(ins, in, 3), P<bf16>(in[0]), P<bf16>(in[1]),
                             P<bf16>(in[2]), P<bf16>(out[0]), P<float>(out[1]), s);
        return;
      case Op::attention_backward:
        require_bf16(ins, in[0]);
        k::attention_backward(*attention_, attention_args<k::AttentionArgs>(ins, in, 6), P<bf16>(in[0]), P<bf16>(in[1]),
                              P<bf16>(in[2]), P<bf16>(in[3]), P<float>(in[4]), P<bf16>(in[5]), P<bf16>(out[0]),
                              P<bf16>(out[1]), P<bf16>(out[2]), s);
        return;
      case Op::cross_entropy:
        require_bf16(ins, in[0]);
        k::cross_entropy_forward(*gemm_, cross_entropy_args<k::CrossEntropyArgs>(ins, in[0].shape(), in[1].shape()), P<bf16>(in[0]),
                                 P<bf16>(in[1]), I(in[2]), P<float>(out[0]), P<float>(out[1]), P<float>(out[2]),
                                 workspace_, s);
        return;
      case Op::cross_entropy_backward:
        require_bf16(ins, in[0]);
        k::cross_entropy_backward(*gemm_, cross_entropy_args<k::CrossEntropyArgs>(ins, in[0].shape(), in[1].shape()), P<bf16>(in[0]),
                                  P<bf16>(in[1]), I(in[2]), P<float>(in[3]), P<float>(in[4]), P<bf16>(out[0]),
                                  P<bf16>(out[1]), workspace_, s);
        return;
      case Op::sum:
      case Op::mean:
        return by_dtype(in[0].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          const Shape& x = in[0].shape();
          const float sc = ins.op == Op::mean ? float(double(out[0].numel()) / double(in[0].numel())) : 1.0f;
          k::reduce_sum<T>(P<T>(in[0]), P<T>(out[0]), x.dims(),
                           axis_mask(std::get<ir::ReduceAttrs>(ins.attrs).axes, x.rank()), sc, s);
        });
      case Op::broadcast:
        return by_dtype(in[0].dtype(), ins, [&](auto t) {
          using T = decltype(t);
          const auto& a = std::get<ir::BroadcastAttrs>(ins.attrs);
          k::broadcast<T>(P<T>(in[0]), P<T>(out[0]), a.shape, axis_mask(a.axes, int(a.shape.size())), a.scale, s);
        });
      case Op::cast:
        if (in[0].dtype() == out[0].dtype())
          CUDA_CHECK(cudaMemcpyAsync(out[0].raw(), in[0].raw(), in[0].nbytes(), cudaMemcpyDeviceToDevice, s));
        else if (in[0].dtype() == DType::f32)
          k::cast_f32_to_bf16(P<float>(in[0]), P<bf16>(out[0]), in[0].numel(), s);
        else
          k::cast_bf16_to_f32(P<bf16>(in[0]), P<float>(out[0]), in[0].numel(), s);
        return;
      case Op::all_to_all:
      case Op::all_gather:
      case Op::reduce_scatter:
      case Op::all_reduce:
      case Op::send_recv:
      case Op::ring_attention:
      case Op::ring_attention_backward:
      case Op::offload:
      case Op::fetch:
        break;  // communication: the executor runs these with its communicators (ring attention
                // through run_ring_attention)
      case Op::pack: {
        std::vector<const void*> parts;
        std::vector<int64_t> bytes;
        for (const Tensor& t : in) {
          parts.push_back(t.raw());
          bytes.push_back(int64_t(t.nbytes()));
        }
        k::pack(parts, bytes, out[0].raw(), int64_t(out[0].nbytes()), s);
        return;
      }
      case Op::unpack: {  // only reaches here when a part must be a copy (see lower)
        std::vector<void*> parts;
        std::vector<int64_t> bytes;
        for (Tensor& t : out) {
          parts.push_back(t.raw());
          bytes.push_back(int64_t(t.nbytes()));
        }
        k::unpack(in[0].raw(), parts, bytes, s);
        return;
      }
      case Op::split: {
        const auto& a = std::get<ir::SplitAttrs>(ins.attrs);
        k::split(in[0].raw(), data_pointers(out), in[0].shape().dims(), int(a.axis), a.sizes,
                 int64_t(dtype_size(in[0].dtype())), s);
        return;
      }
      case Op::concat: {
        const int axis = int(std::get<ir::ConcatAttrs>(ins.attrs).axis);
        k::concat(data_pointers(in), out[0].raw(), out[0].shape().dims(), axis, extents(in, axis),
                  int64_t(dtype_size(out[0].dtype())), s);
        return;
      }
    }
    AUTOSP_CHECK(false) << "cuda backend: no kernel for " << ir::op_name(ins.op);
  }

  static constexpr int kMaxNormTensors = 1024;

  static std::mutex& sizes_mu() {
    static std::mutex m;
    return m;
  }
  static std::unordered_map<void*, size_t>& sizes() {
    static std::unordered_map<void*, size_t> s;
    return s;
  }
  static void free_block(void* p) {
    size_t bytes = 0;
    {
      std::lock_guard<std::mutex> l(sizes_mu());
      auto it = sizes().find(p);
      if (it != sizes().end()) {
        bytes = it->second;
        sizes().erase(it);
      }
    }
    count(-int64_t(bytes));
    cudaFree(p);
  }

  // The kernels' scratch for one instruction (they share one workspace: the compute stream
  // runs one kernel's use of it after another's).
  static size_t workspace_bytes(const ir::Program& p, const ir::Instr& ins) {
    auto shape = [&](int slot) -> const Shape& { return p.slots[slot].type.shape; };
    switch (ins.op) {
      case Op::rms_norm_backward:
      case Op::layer_norm_backward:
        return k::norm_backward_scratch_bytes(rows_of(shape(ins.in[0])), shape(ins.in[0])[-1],
                                              ins.op == Op::layer_norm_backward);
      case Op::embedding_backward:
        return k::embedding_backward_scratch_bytes(shape(ins.in[0]).numel(), shape(ins.out[0])[0]);
      case Op::cross_entropy:
      case Op::cross_entropy_backward:
        return k::cross_entropy_scratch_bytes(cross_entropy_args<k::CrossEntropyArgs>(ins, shape(ins.in[0]), shape(ins.in[1])));
      default: return 0;
    }
  }

  // The compute stream waits (on the device) for the work issued so far on the communication stream.
  void after_comm() {
    CUDA_CHECK(cudaEventRecord(comm_done_, comm_));
    CUDA_CHECK(cudaStreamWaitEvent(compute_, comm_done_, 0));
  }

  template <class F>
  void by_norm_types(const ir::Instr& ins, std::span<const Tensor> in, F&& f) {
    by_dtype(in[0].dtype(), ins, [&](auto t) { by_dtype(in[1].dtype(), ins, [&](auto w) { f(t, w); }); });
  }

  void binary(k::BinaryOp op, const ir::Instr& ins, std::span<const Tensor> in, std::span<Tensor> out) {
    by_dtype(in[0].dtype(), ins, [&](auto t) {
      using T = decltype(t);
      k::binary<T>(op, P<T>(in[0]), P<T>(in[1]), P<T>(out[0]), in[0].numel(), in[1].numel(), compute_);
    });
  }

  int device_;
  cudaStream_t compute_ = nullptr, comm_ = nullptr;
  std::unique_ptr<k::GemmContext> gemm_;
  std::unique_ptr<k::AttentionContext> attention_;
  std::unique_ptr<CudaMemOps> comm_mem_, compute_thread_mem_;
  std::unique_ptr<CudaRingAttention> ring_[2];  // for the communication thread, the compute thread
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  cudaEvent_t comm_done_ = nullptr;  // after_comm's, recorded anew each use
  float* norm_partials_ = nullptr;
  double* sum_squares_scratch_ = nullptr;
  std::vector<cudaEvent_t> handed_over_, issued_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

cudaStream_t cuda_comm_stream(Backend& b) {
  auto* c = dynamic_cast<CudaBackend*>(&b);
  AUTOSP_CHECK(c) << "cuda_comm_stream: not a CUDA backend";
  return c->comm_stream();
}

int cuda_device_count(std::string* why_none) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    if (why_none) *why_none = cudaGetErrorString(e);
    return 0;
  }
  if (n == 0 && why_none) *why_none = "no CUDA device";
  return n;
}

}  // namespace autosp::runtime
