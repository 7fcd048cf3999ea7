// Times CUDA attention forward and backward (kernels/cuda/attention.h) with CUDA events and
// prints one JSON line per (implementation, case, head count):
//   {"path":"cudnn","case":"causal","gpu":"NVIDIA H100 80GB HBM3","B":1,"T":32768,"H":8,"D":128,
//    "fwd_ms":...,"bwd_ms":...,"fwd_tflops":...,"bwd_tflops":...}
// A benchmark prints numbers; it is not a test (STYLE.md) and ctest does not run it.
//   bench_attention_cuda [--T 32768] [--H 8,16,32] [--iters 5]
// Shape: B = 1, D = 128, causal, Hkv = H. Implementations: cuDNN SDPA when this build has it
// (a shape cuDNN rejects is reported on stderr and skipped) and our fallback kernels.
// Three more cases per head count ("case" in the JSON; the first is "causal"):
//   ring_block: one step of a zigzag ring of 8 ranks (rank 0's queries, the block of rank 1):
//     only the late half of the queries sees the block, all of it. cuDNN runs that piece on
//     row windows (runtime/cuda/ring_attention_cuda.cc); the fallback attends the whole
//     block by position and skips the hidden tiles.
//   documents: packed documents of 4096 tokens (segment ids): cuDNN's ragged layout (the
//     document table scanned once, as once per training step; kernels/cuda/attention_cudnn.cc)
//     and the fallback; FLOPs count each document's causal square.
//   ring_block_documents: the ring_block piece over documents of 65536 global tokens: the
//     late queries share one document with the block's late chunk only. cuDNN pairs them in
//     its ragged layout (attention_forward_cudnn_visiting, tables built on the device); the
//     fallback attends the whole block by position and id. FLOPs count the pairs of equal ids.
//
// FLOPs convention (FlashAttention's): the forward is two matmuls, Q·Kᵀ and P·V, of 2·T²·D each
// per head, 4·B·H·T²·D in all, halved for causal masking; the backward counts 2.5× the forward
// (five matmuls instead of two; the recomputation of S, and our fallback's second S and dP, are
// not counted).
//
// Without a usable GPU it prints why and exits 0.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"

namespace gpu = autosp::kernels::cuda;
using gpu::bf16;

namespace {

struct Options {
  int64_t T = 32768;
  std::vector<int64_t> heads = {8};
  int iters = 5;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--T") {
      o.T = std::stoll(value);
    } else if (flag == "--iters") {
      o.iters = std::stoi(value);
    } else if (flag == "--H") {
      o.heads.clear();
      std::stringstream ss(value);
      for (std::string h; std::getline(ss, h, ',');) o.heads.push_back(std::stoll(h));
    } else {
      std::fprintf(stderr, "usage: bench_attention_cuda [--T 32768] [--H 8,16,32] [--iters 5]\n");
      std::exit(2);
    }
  }
  return o;
}

// A device buffer of n bf16 values drawn from N(0, 1).
bf16* random_bf16(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<bf16> h(n);
  for (bf16& x : h) x = __float2bfloat16(dist(rng));
  bf16* d = nullptr;
  CUDA_CHECK(cudaMalloc(&d, n * sizeof(bf16)));
  CUDA_CHECK(cudaMemcpy(d, h.data(), n * sizeof(bf16), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaDeviceSynchronize());  // a pageable copy may land after cudaMemcpy returns
  return d;
}

// A device copy of host int32 values.
int32_t* device_ints(const std::vector<int32_t>& h) {
  int32_t* d = nullptr;
  CUDA_CHECK(cudaMalloc(&d, h.size() * sizeof(int32_t)));
  CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaDeviceSynchronize());
  return d;
}

// Zigzag positions of `rank` of P (chunks rank and 2P-1-rank of T/2 tokens each).
std::vector<int32_t> zigzag(int64_t T, int P, int rank) {
  std::vector<int32_t> out;
  const int64_t c = T / 2;
  for (const int64_t chunk : {int64_t(rank), int64_t(2 * P - 1 - rank)})
    for (int64_t i = 0; i < c; ++i) out.push_back(int32_t(chunk * c + i));
  return out;
}

void print_line(const char* path, const char* what, const cudaDeviceProp& prop, int64_t T, int64_t H, int64_t D,
                float fwd_ms, float bwd_ms, double fwd_flop) {
  std::printf(
      "{\"path\":\"%s\",\"case\":\"%s\",\"gpu\":\"%s\",\"B\":1,\"T\":%lld,\"H\":%lld,\"D\":%lld,"
      "\"fwd_ms\":%.3f,\"bwd_ms\":%.3f,\"fwd_tflops\":%.1f,\"bwd_tflops\":%.1f}\n",
      path, what, prop.name, static_cast<long long>(T), static_cast<long long>(H), static_cast<long long>(D), fwd_ms,
      bwd_ms, fwd_flop / (fwd_ms * 1e9), 2.5 * fwd_flop / (bwd_ms * 1e9));
  std::fflush(stdout);
}

// Milliseconds per call of f, after one untimed call (graph builds, scratch growth).
template <class F>
float time_ms(int iters, F f) {
  f();
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  CUDA_CHECK(cudaEventRecord(start));
  for (int i = 0; i < iters; ++i) f();
  CUDA_CHECK(cudaEventRecord(stop));
  CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  return ms / float(iters);
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_attention_cuda: skipped, no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int64_t B = 1, D = 128, T = opt.T;

  for (int64_t H : opt.heads) {
    const size_t n = size_t(B * T * H * D);
    bf16 *q = random_bf16(n, 1), *k = random_bf16(n, 2), *v = random_bf16(n, 3), *dout = random_bf16(n, 4);
    bf16 *o, *dq, *dk, *dv;
    float* lse;
    for (bf16** p : {&o, &dq, &dk, &dv}) CUDA_CHECK(cudaMalloc(p, n * sizeof(bf16)));
    CUDA_CHECK(cudaMalloc(&lse, size_t(B * H * T) * sizeof(float)));
    const gpu::AttentionArgs a{B, T, T, H, H, D, true, 1.0f / std::sqrt(float(D))};
    const double fwd_flop = 4.0 * double(B * H) * double(T) * double(T) * double(D) / 2.0;
    // The fallback kernels on whole [B, T] blocks with these arguments' masks, timed and printed.
    auto fallback_line = [&](const char* what, const gpu::AttentionArgs& args, double flop) {
      gpu::AttentionContext fctx;
      const float f = time_ms(opt.iters, [&] { gpu::attention_forward_fallback(fctx, args, q, k, v, o, lse, nullptr); });
      const float b = time_ms(opt.iters, [&] {
        gpu::attention_backward_fallback(fctx, args, q, k, v, o, lse, dout, dq, dk, dv, nullptr);
      });
      print_line("fallback", what, prop, T, H, D, f, b, flop);
    };
    // A cuDNN case from its forward and backward calls (each false when cuDNN declines), timed
    // and printed, or why not.
    auto cudnn_line = [&](const char* what, double flop, auto forward, auto backward) {
      if (!forward()) {
        std::fprintf(stderr, "bench_attention_cuda: cuDNN declined %s (its reason above, if any; packed documents "
                     "need cuDNN 9.6)\n", what);
        return;
      }
      const float f = time_ms(opt.iters, [&] { forward(); });
      bool ok = true;
      const float b = time_ms(opt.iters, [&] { ok = backward() && ok; });
      if (ok) print_line("cudnn", what, prop, T, H, D, f, b, flop);
    };

    for (const char* path : {"cudnn", "fallback"}) {
      gpu::AttentionContext ctx;
      const bool cudnn = std::strcmp(path, "cudnn") == 0;
      if (cudnn && !gpu::attention_forward_cudnn(ctx, a, q, k, v, o, lse, nullptr)) {
        std::fprintf(stderr, "bench_attention_cuda: no cuDNN SDPA for H = %lld in this build or on this GPU\n",
                     static_cast<long long>(H));
        continue;
      }
      const float fwd_ms = time_ms(opt.iters, [&] {
        if (cudnn) {
          gpu::attention_forward_cudnn(ctx, a, q, k, v, o, lse, nullptr);
        } else {
          gpu::attention_forward_fallback(ctx, a, q, k, v, o, lse, nullptr);
        }
      });
      bool bwd_ok = true;
      const float bwd_ms = time_ms(opt.iters, [&] {
        if (cudnn) {
          bwd_ok = gpu::attention_backward_cudnn(ctx, a, q, k, v, o, lse, dout, dq, dk, dv, nullptr) && bwd_ok;
        } else {
          gpu::attention_backward_fallback(ctx, a, q, k, v, o, lse, dout, dq, dk, dv, nullptr);
        }
      });
      CUDA_CHECK(cudaDeviceSynchronize());
      if (!bwd_ok) {
        std::fprintf(stderr, "bench_attention_cuda: no cuDNN SDPA backward for H = %lld\n", static_cast<long long>(H));
        continue;
      }
      print_line(path, "causal", prop, T, H, D, fwd_ms, bwd_ms, fwd_flop);
    }

    {  // ring_block: the piece is queries [T/2, T) against keys [0, T), no mask.
      const std::vector<int32_t> qp = zigzag(T, 8, 0), kp = zigzag(T, 8, 1);
      int32_t *q_pos = device_ints(qp), *k_pos = device_ints(kp);
      gpu::AttentionArgs whole = a;
      whole.q_pos = q_pos, whole.k_pos = k_pos;
      gpu::AttentionArgs piece = a;
      piece.Tq = T / 2, piece.causal = false, piece.q_rows = T, piece.k_rows = T;
      const int64_t off = (T / 2) * H * D;
      const double flop = 4.0 * double(H) * double(T / 2) * double(T) * double(D);
      gpu::AttentionContext ctx;
      cudnn_line(
          "ring_block", flop,
          [&] { return gpu::attention_forward_cudnn(ctx, piece, q + off, k, v, o + off, lse, nullptr); },
          [&] {
            return gpu::attention_backward_cudnn(ctx, piece, q + off, k, v, o + off, lse, dout + off, dq + off, dk,
                                                 dv, nullptr);
          });
      fallback_line("ring_block", whole, flop);
      CUDA_CHECK(cudaFree(q_pos));
      CUDA_CHECK(cudaFree(k_pos));
    }

    {  // ring_block_documents: rank 0's late queries against rank 1's block, documents of 65536 tokens
      const int P = 8;
      const std::vector<int32_t> qp = zigzag(T, P, 0), kp = zigzag(T, P, 1);
      std::vector<int32_t> qs, ks;
      for (int32_t i : qp) qs.push_back(i / 65536);
      for (int32_t i : kp) ks.push_back(i / 65536);
      std::map<int32_t, double> keys_of;  // keys per id
      for (int32_t id : ks) keys_of[id] += 1;
      double pairs = 0;  // (query in the late half, key) pairs of one id
      for (int64_t i = T / 2; i < T; ++i) pairs += keys_of[qs[size_t(i)]];
      const double flop = 4.0 * double(H) * pairs * double(D);
      int32_t *q_pos = device_ints(qp), *k_pos = device_ints(kp), *q_seg = device_ints(qs), *k_seg = device_ints(ks);
      gpu::AttentionArgs piece = a;
      piece.Tq = T / 2, piece.causal = false, piece.q_rows = T, piece.k_rows = T;
      const gpu::VisitingDocuments docs{q_seg, k_seg, T / 2, 0};
      const int64_t off = (T / 2) * H * D;
      gpu::AttentionContext ctx;
      ctx.begin_step();  // one step: the queries' documents are scanned by the first call only
      cudnn_line(
          "ring_block_documents", flop,
          [&] { return gpu::attention_forward_cudnn_visiting(ctx, piece, docs, q + off, k, v, o + off, lse, nullptr); },
          [&] {
            return gpu::attention_backward_cudnn_visiting(ctx, piece, docs, q + off, k, v, o + off, lse, dout + off,
                                                          dq + off, dk, dv, nullptr);
          });
      gpu::AttentionArgs whole = a;
      whole.q_pos = q_pos, whole.k_pos = k_pos, whole.q_seg = q_seg, whole.k_seg = k_seg;
      fallback_line("ring_block_documents", whole, flop);
      for (int32_t* p : {q_pos, k_pos, q_seg, k_seg}) CUDA_CHECK(cudaFree(p));
    }

    {  // documents of 4096 tokens
      const int64_t L = std::min<int64_t>(4096, T);
      std::vector<int32_t> seg(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) seg[size_t(t)] = int32_t(t / L);
      int32_t* d_seg = device_ints(seg);
      gpu::AttentionArgs docs = a;
      docs.q_seg = docs.k_seg = d_seg;
      double flop = 0;
      for (int64_t start = 0; start < T; start += L) {
        const double n = double(std::min(L, T - start));
        flop += 4.0 * double(H) * n * n * double(D) / 2.0;
      }
      gpu::AttentionContext cctx;
      cctx.begin_step();  // one step: the document table is scanned by the first call only
      cudnn_line(
          "documents", flop, [&] { return gpu::attention_forward_cudnn(cctx, docs, q, k, v, o, lse, nullptr); },
          [&] { return gpu::attention_backward_cudnn(cctx, docs, q, k, v, o, lse, dout, dq, dk, dv, nullptr); });
      fallback_line("documents", docs, flop);
      CUDA_CHECK(cudaFree(d_seg));
    }
    for (void* p : {static_cast<void*>(q), static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(dout),
                    static_cast<void*>(o), static_cast<void*>(dq), static_cast<void*>(dk), static_cast<void*>(dv),
                    static_cast<void*>(lse)})
      CUDA_CHECK(cudaFree(p));
  }
  return 0;
}
