// CUDA kernels' launchers: bf16 activations, fp32 arithmetic, fp32 parameters/optimizer
// state where the CPU runtime keeps them. Same semantics as the CPU kernels of the same name
// in kernels/cpu (the tests in tests/cuda compare them). Every launcher takes device
// pointers and a stream, checks its sizes, launches, and checks the launch.
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace autosp::kernels::cuda {

using bf16 = __nv_bfloat16;

// matmul.cu — cuBLASLt, bf16 in and out, fp32 accumulation; the contract of
// kernels/cpu/matmul.h. The context owns the handle and a workspace, created once.
struct GemmContext {
  explicit GemmContext(size_t workspace_bytes = size_t(32) << 20);
  ~GemmContext();
  GemmContext(const GemmContext&) = delete;
  GemmContext& operator=(const GemmContext&) = delete;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes;
};
void matmul(GemmContext& ctx, const bf16* A, const bf16* B, bf16* C, int64_t batch, int64_t M, int64_t N, int64_t K,
            bool trans_a, bool trans_b, bool b_broadcast, cudaStream_t s);

// cast.cu
void cast_f32_to_bf16(const float* x, bf16* y, int64_t n, cudaStream_t s);
void cast_bf16_to_f32(const bf16* x, float* y, int64_t n, cudaStream_t s);

// norm.cu — rows × dim, over the last axis. rstd (float[rows]) is scratch the backward fills.
void rms_norm_forward(const bf16* x, const float* g, bf16* y, int64_t rows, int64_t dim, float eps, cudaStream_t s);
// dg is overwritten with Σ_rows; deterministic (a fixed reduction order, no atomics).
void rms_norm_backward(const bf16* x, const float* g, const bf16* dy, bf16* dx, float* dg, float* rstd,
                       int64_t rows, int64_t dim, float eps, cudaStream_t s);

// rope.cu — [B, T, H, D], HF rotate_half; angles in double like the CPU kernel, so long
// positions agree with it.
void rope(const bf16* x, const int32_t* pos, bf16* y, int64_t B, int64_t T, int64_t H, int64_t D, float theta,
          bool inverse, cudaStream_t s);

// activation.cu
void silu_forward(const bf16* x, bf16* y, int64_t n, cudaStream_t s);
void silu_backward(const bf16* x, const bf16* dy, bf16* dx, int64_t n, cudaStream_t s);
void swiglu_forward(const bf16* gate, const bf16* up, bf16* y, int64_t n, cudaStream_t s);
void swiglu_backward(const bf16* gate, const bf16* up, const bf16* dy, bf16* dgate, bf16* dup, int64_t n,
                     cudaStream_t s);

// adamw.cu — fp32 master weights and moments; also refreshes the bf16 copy the forward reads
// (p_bf16 may be null). Same formula as kernels/cpu/adamw.h.
void adamw_step(float* p, bf16* p_bf16, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step, float grad_scale, cudaStream_t s);

}  // namespace autosp::kernels::cuda
