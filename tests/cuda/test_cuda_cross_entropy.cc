// CUDA fused LM head + cross-entropy against kernels/cpu/cross_entropy on the same bf16 h and w:
// ignored targets, a vocabulary that the chunk does not divide, a token count that the row
// block does not divide (so dw accumulates across row blocks), and a single-tile case.
//
// Tolerances. Logits: both sides sum D = 64 exact products in fp32, in different orders:
// ≤ D·2^-24·Σ|h||w| ≈ 1e-5 here, which bounds lse and each row's loss: lse 1e-4, loss_sum
// 1e-4 per counted row. Gradients: dlogits is rounded to bf16 (2^-9 relative) before the
// GEMMs and dh and dw are rounded once more (dw accumulates across row blocks in fp32):
// against mag = Σ|dlogits|·|operand| (computed here in double) that is ≤ 2·2^-9·mag; we
// allow 2^-6·mag + 2^-8·|value|.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/cpu/cross_entropy.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

namespace {

struct Run {
  float loss_sum, count;
  std::vector<float> lse, dh, dw;
};

void run(int64_t chunk, int64_t row_block) {
  const int64_t N = 130, D = 64, V = 1003;
  const int32_t ignore = -100;
  INFO("chunk " << chunk << " row_block " << row_block);
  std::vector<int32_t> targets(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) targets[size_t(i)] = int32_t((i * 37 + 11) % V);
  for (int64_t i : {0, 5, 6, 47, 48, 129}) targets[size_t(i)] = ignore;  // incl. row-block edges
  targets[1] = 0;
  targets[2] = int32_t(V - 1);
  Buf h(random(size_t(N * D), 31)), w(random(size_t(V * D), 32, 0.3f)), dh(size_t(N * D)), dw(size_t(V * D));
  int32_t* targets_dev = device_copy(targets);
  const float dloss = 0.5f;
  float* dloss_dev = device_copy(std::vector<float>{dloss});
  float* out_dev = device_copy(std::vector<float>(size_t(2 + N)));  // loss_sum, count, lse[N]

  gpu::CrossEntropyArgs a;
  a.N = N;
  a.D = D;
  a.V = V;
  a.ignore_index = ignore;
  a.chunk = chunk;
  a.row_block = row_block;
  Scratch scratch(gpu::cross_entropy_scratch_bytes(a));
  gpu::GemmContext ctx;
  auto once = [&]() {
    gpu::cross_entropy_forward(ctx, a, h.dev, w.dev, targets_dev, out_dev, out_dev + 1, out_dev + 2, scratch.ptr,
                               nullptr);
    gpu::cross_entropy_backward(ctx, a, h.dev, w.dev, targets_dev, out_dev + 2, dloss_dev, dh.dev, dw.dev, scratch.ptr,
                                nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const std::vector<float> out = host_copy(out_dev, size_t(2 + N));
    return Run{out[0], out[1], std::vector<float>(out.begin() + 2, out.end()), dh.download(), dw.download()};
  };
  const Run got = once();

  cpu::CrossEntropyArgs ca{N, D, V, ignore, 256};
  float loss_sum = 0, count = 0;
  std::vector<float> lse(static_cast<size_t>(N)), rdh(size_t(N * D)), rdw(size_t(V * D));
  cpu::cross_entropy_forward(ca, h.host.data(), w.host.data(), targets.data(), &loss_sum, &count, lse.data());
  cpu::cross_entropy_backward(ca, h.host.data(), w.host.data(), targets.data(), lse.data(), dloss, rdh.data(),
                              rdw.data());

  REQUIRE(got.count == count);
  REQUIRE(std::abs(got.loss_sum - loss_sum) <= 1e-4f * count);
  close(got.lse, lse, 0.0f, 1e-4f);

  // mag for dh and dw: Σ|dlogits|·|w| and Σ|dlogits|·|h|, dlogits from double logits.
  std::vector<double> mag_dh(size_t(N * D), 0.0), mag_dw(size_t(V * D), 0.0);
  for (int64_t i = 0; i < N; ++i) {
    if (targets[size_t(i)] == ignore) continue;
    for (int64_t v = 0; v < V; ++v) {
      double logit = 0;
      for (int64_t d = 0; d < D; ++d) logit += double(h.host[size_t(i * D + d)]) * w.host[size_t(v * D + d)];
      const double g = std::abs(dloss * (std::exp(logit - lse[size_t(i)]) - (v == targets[size_t(i)] ? 1.0 : 0.0)));
      for (int64_t d = 0; d < D; ++d) {
        mag_dh[size_t(i * D + d)] += g * std::abs(w.host[size_t(v * D + d)]);
        mag_dw[size_t(v * D + d)] += g * std::abs(h.host[size_t(i * D + d)]);
      }
    }
  }
  auto check_grad = [](const std::vector<float>& g, const std::vector<float>& want, const std::vector<double>& mag) {
    for (size_t k = 0; k < g.size(); ++k) {
      if (!(std::abs(g[k] - want[k]) <= 0x1p-6 * mag[k] + 0x1p-8 * std::abs(want[k]) + 1e-6))
        FAIL("element " << k << ": got " << g[k] << ", want " << want[k] << ", mag " << mag[k]);
    }
  };
  check_grad(got.dh, rdh, mag_dh);
  check_grad(got.dw, rdw, mag_dw);
  for (int64_t d = 0; d < D; ++d) REQUIRE(got.dh[size_t(5 * D + d)] == 0.0f);  // an ignored row

  // Run to run: the same bits.
  const Run again = once();
  REQUIRE(again.loss_sum == got.loss_sum);
  REQUIRE(again.lse == got.lse);
  REQUIRE(again.dh == got.dh);
  REQUIRE(again.dw == got.dw);
  cudaFree(targets_dev);
  cudaFree(dloss_dev);
  cudaFree(out_dev);
}

}  // namespace

TEST_CASE("CUDA cross-entropy matches the CPU kernel across chunk and row-block edges", "[cuda]") {
  REQUIRE_GPU();
  run(256, 48);     // 4 chunks, the last of 235 columns; 3 row blocks, the last of 34 rows
  run(4096, 4096);  // one tile: chunk and row block clamp to V and N
}

TEST_CASE("CUDA cross-entropy over no tokens gives a zero loss and zero weight gradient", "[cuda]") {
  REQUIRE_GPU();
  gpu::CrossEntropyArgs a;
  a.D = 8;
  a.V = 5;
  Buf w(random(40, 33)), dw(random(40, 34));
  float* out_dev = device_copy(std::vector<float>{1.0f, 1.0f});
  float* dloss_dev = device_copy(std::vector<float>{1.0f});
  Scratch scratch(gpu::cross_entropy_scratch_bytes(a));
  gpu::GemmContext ctx;
  gpu::cross_entropy_forward(ctx, a, nullptr, w.dev, nullptr, out_dev, out_dev + 1, nullptr, scratch.ptr, nullptr);
  gpu::cross_entropy_backward(ctx, a, nullptr, w.dev, nullptr, nullptr, dloss_dev, nullptr, dw.dev, scratch.ptr,
                              nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  REQUIRE(host_copy(out_dev, 2) == std::vector<float>{0.0f, 0.0f});
  REQUIRE(dw.download() == std::vector<float>(40, 0.0f));
  cudaFree(out_dev);
  cudaFree(dloss_dev);
}
