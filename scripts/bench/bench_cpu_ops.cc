// Throughput of the CPU GEMM-bound kernels, printed as a table (run via
// scripts/bench_cpu_ops.sh). Each number is the best of several timed calls after a warm-up:
// the host is shared, and the best run is the one least disturbed by other work.
//
//   sgemm:      2·M·N·K flops, for matmul() and for cblas_sgemm called directly with the
//               same arguments (OpenBLAS's own rate); "ours/raw" is their ratio.
//   attention:  causal forward counts 2·2·B·H·T²·D / 2 flops (QKᵀ and PV, half the tiles);
//               backward counts 2.5× that (the usual convention: 5 tile GEMMs vs 2). The
//               kernel actually does 7 in backward (S and dP are recomputed once per pass).
//   cross-ent.: 2·N·D·V flops forward (the logits GEMM), 3× that forward + backward.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "core/rng.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/matmul.h"

using namespace autosp::kernels::cpu;

namespace {

double min_seconds = 0.5;  // time budget per measurement (after one warm-up call)

// Best time of one call of f, over as many calls as fit in min_seconds (at least 3).
double best_seconds(const std::function<void()>& f) {
  f();
  double best = 1e30, total = 0;
  for (int i = 0; i < 3 || total < min_seconds; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, dt);
    total += dt;
  }
  return best;
}

std::vector<float> randn(int64_t n, uint64_t stream) {
  autosp::Rng rng(42, stream);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = rng.normal(i);
  return x;
}

void bench_gemm(const char* name, int64_t batch, int64_t M, int64_t N, int64_t K, bool trans_b) {
  const auto A = randn(batch * M * K, 1), B = randn(batch * K * N, 2);
  std::vector<float> C(batch * M * N);
  const double flops = 2.0 * batch * M * N * K;
  const double ours = best_seconds([&] {
    matmul(A.data(), B.data(), C.data(), batch, M, N, K, false, trans_b, false);
  });
  const double raw = best_seconds([&] {
    for (int64_t b = 0; b < batch; ++b)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                  A.data() + b * M * K, K, B.data() + b * K * N, trans_b ? K : N, 0.0f, C.data() + b * M * N, N);
  });
  std::printf("%-34s %9.1f %9.1f %8.2f\n", name, flops / ours * 1e-9, flops / raw * 1e-9, raw / ours);
}

void bench_attention(int64_t T, int64_t H, int64_t D) {
  AttentionArgs a;
  a.B = 1, a.Tq = T, a.Tk = T, a.H = H, a.Hkv = H, a.D = D, a.causal = true;
  a.scale = 1.0f / std::sqrt(float(D));
  const auto q = randn(T * H * D, 3), k = randn(T * H * D, 4), v = randn(T * H * D, 5), dout = randn(T * H * D, 6);
  std::vector<float> o(T * H * D), lse(H * T), dq(T * H * D), dk(T * H * D), dv(T * H * D);
  const double fwd_flops = 2.0 * 2.0 * a.B * H * double(T) * T * D / 2;
  const double tf = best_seconds([&] { attention_forward(a, q.data(), k.data(), v.data(), o.data(), lse.data()); });
  const double tb = best_seconds([&] {
    attention_backward(a, q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                       dv.data());
  });
  char name[64];
  std::snprintf(name, sizeof name, "attention causal T=%lld H=%lld D=%lld", (long long)T, (long long)H,
                (long long)D);
  std::printf("%-34s %9.1f %9.1f %9.1f %9.1f ms\n", name, fwd_flops / tf * 1e-9, 2.5 * fwd_flops / tb * 1e-9,
              3.5 * fwd_flops / (tf + tb) * 1e-9, (tf + tb) * 1e3);
}

void bench_cross_entropy(int64_t N, int64_t D, int64_t V) {
  CrossEntropyArgs a;
  a.N = N, a.D = D, a.V = V;
  const auto h = randn(N * D, 7), w = randn(V * D, 8);
  std::vector<int32_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[i] = int32_t((i * 7919) % V);
  std::vector<float> lse(N), dh(N * D), dw(V * D);
  float loss, count;
  const double flops = 2.0 * N * D * V;
  const double tf = best_seconds([&] { cross_entropy_forward(a, h.data(), w.data(), t.data(), &loss, &count, lse.data()); });
  const double tb = best_seconds(
      [&] { cross_entropy_backward(a, h.data(), w.data(), t.data(), lse.data(), 1.0f, dh.data(), dw.data()); });
  char name[64];
  std::snprintf(name, sizeof name, "cross_entropy N=%lld D=%lld V=%lld", (long long)N, (long long)D, (long long)V);
  std::printf("%-34s %9.1f %9.1f %9.1f %9.1f ms\n", name, flops / tf * 1e-9, 2 * flops / tb * 1e-9,
              3 * flops / (tf + tb) * 1e-9, (tf + tb) * 1e3);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (quick) min_seconds = 0.1;
  std::printf("threads: OpenMP %d, OpenBLAS %d (%s)\n\n", omp_get_max_threads(), openblas_get_num_threads(),
              openblas_get_corename());

  std::printf("%-34s %9s %9s %8s\n", "sgemm (GFLOP/s)", "matmul()", "cblas", "ours/raw");
  for (int64_t n : {512, 1024, 2048}) {
    char name[64];
    std::snprintf(name, sizeof name, "square %lld", (long long)n);
    bench_gemm(name, 1, n, n, n, false);
  }
  bench_gemm("proj 4096x2048 . (2048x2048)^T", 1, 4096, 2048, 2048, true);
  bench_gemm("batched 32 x (128x128x64)", 32, 128, 128, 64, false);

  std::printf("\n%-34s %9s %9s %9s %12s\n", "attention (GFLOP/s)", "fwd", "bwd", "fwd+bwd", "fwd+bwd time");
  for (int64_t T : {1024, 4096}) bench_attention(T, 4, 64);
  if (!quick) bench_attention(4096, 4, 128);

  std::printf("\n%-34s %9s %9s %9s %12s\n", "cross-entropy (GFLOP/s)", "fwd", "bwd", "fwd+bwd", "fwd+bwd time");
  bench_cross_entropy(2048, 256, 32000);
  return 0;
}
