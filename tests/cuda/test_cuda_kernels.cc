// Every CUDA kernel against the CPU kernel of the same name (kernels/cpu), on bf16 inputs.
// Without a CUDA device each test prints why it skipped and passes.
//
// Tolerance: the CUDA kernels compute in fp32 but read and write bf16 (8 significant bits),
// while the CPU reference runs in fp32 on the same bf16-rounded inputs. One bf16 rounding of
// the output is 2^-9 relative; we allow 2^-7 (4 roundings: input-dependent intermediates such
// as rstd or sigmoid, plus the output) of the reference's magnitude + 1e-3 absolute for
// values near zero. fp32 outputs (dg, AdamW state) are compared at 1e-4 relative (different
// summation order over at most a few thousand terms).
#include <catch2/catch.hpp>
#include <cuda_runtime.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using gpu::bf16;

using namespace autosp::cuda_test;

TEST_CASE("CUDA rms_norm forward and backward match the CPU kernel", "[cuda]") {
  REQUIRE_GPU();
  const int64_t rows = 37, dim = 300;
  Buf x(random(rows * dim, 1)), dy(random(rows * dim, 2)), y(rows * dim), dx(rows * dim);
  const std::vector<float> g = random(dim, 3);
  float* dg_dev = device_copy(std::vector<float>(dim));
  float* g_dev = device_copy(g);
  float* rstd = device_copy(std::vector<float>(rows));
  gpu::rms_norm_forward(x.dev, g_dev, y.dev, rows, dim, 1e-5f, nullptr);
  gpu::rms_norm_backward(x.dev, g_dev, dy.dev, dx.dev, dg_dev, rstd, rows, dim, 1e-5f, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> ry(rows * dim), rdx(rows * dim), rdg(dim);
  cpu::rms_norm_forward(x.host.data(), g.data(), ry.data(), rows, dim, 1e-5f);
  cpu::rms_norm_backward(x.host.data(), g.data(), dy.host.data(), rdx.data(), rdg.data(), rows, dim, 1e-5f);
  close_bf16(y.download(), ry);
  close_bf16(dx.download(), rdx);
  const auto dg = host_copy(dg_dev, dim);
  for (int64_t j = 0; j < dim; ++j) CHECK(std::abs(dg[j] - rdg[j]) <= 1e-4f * (std::abs(rdg[j]) + 1.0f));
  cudaFree(dg_dev);
  cudaFree(g_dev);
  cudaFree(rstd);
}

TEST_CASE("CUDA rope matches the CPU kernel, up to a million positions, and inverts", "[cuda]") {
  REQUIRE_GPU();
  const int64_t B = 2, T = 5, H = 3, D = 16;
  Buf x(random(B * T * H * D, 4)), y(B * T * H * D), back(B * T * H * D);
  const std::vector<int32_t> pos = {0, 1, 7, 1000, 1000000, 3, 65535, 12, 999999, 5};
  int32_t* pos_dev = device_copy(pos);
  gpu::rope(x.dev, pos_dev, y.dev, B, T, H, D, 10000.0f, false, nullptr);
  gpu::rope(y.dev, pos_dev, back.dev, B, T, H, D, 10000.0f, true, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> ry(x.host.size());
  cpu::rope(x.host.data(), pos.data(), ry.data(), B, T, H, D, 10000.0f, false);
  close_bf16(y.download(), ry);
  // Twice rounded to bf16 on the way: 2 × 2^-8 relative.
  const auto b = back.download();
  for (size_t i = 0; i < b.size(); ++i) CHECK(std::abs(b[i] - x.host[i]) <= 0x1p-7f * std::abs(x.host[i]) + 2e-2f);
  cudaFree(pos_dev);
}

TEST_CASE("CUDA silu and swiglu forward and backward match the CPU kernels", "[cuda]") {
  REQUIRE_GPU();
  const int64_t n = 1003;
  Buf gate(random(n, 5, 3.0f)), up(random(n, 6)), dy(random(n, 7)), y(n), dx(n), dgate(n), dup(n), sy(n);
  gpu::silu_forward(gate.dev, sy.dev, n, nullptr);
  gpu::silu_backward(gate.dev, dy.dev, dx.dev, n, nullptr);
  gpu::swiglu_forward(gate.dev, up.dev, y.dev, n, nullptr);
  gpu::swiglu_backward(gate.dev, up.dev, dy.dev, dgate.dev, dup.dev, n, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> r1(n), r2(n), r3(n), r4(n), r5(n);
  cpu::silu_forward(gate.host.data(), r1.data(), n);
  cpu::silu_backward(gate.host.data(), dy.host.data(), r2.data(), n);
  cpu::swiglu_forward(gate.host.data(), up.host.data(), r3.data(), n);
  cpu::swiglu_backward(gate.host.data(), up.host.data(), dy.host.data(), r4.data(), r5.data(), n);
  close_bf16(sy.download(), r1);
  close_bf16(dx.download(), r2);
  close_bf16(y.download(), r3);
  close_bf16(dgate.download(), r4);
  close_bf16(dup.download(), r5);
}

TEST_CASE("CUDA AdamW matches the CPU kernel and refreshes the bf16 copy", "[cuda]") {
  REQUIRE_GPU();
  const int64_t n = 777;
  std::vector<float> p = random(n, 8), g = random(n, 9), m(n, 0.0f), v(n, 0.0f);
  float *pd = device_copy(p), *gd = device_copy(g), *md = device_copy(m), *vd = device_copy(v);
  Buf copy(n);
  for (int64_t step = 1; step <= 3; ++step) {
    gpu::adamw_step(pd, copy.dev, gd, md, vd, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f, nullptr);
    cpu::adamw_step(p.data(), g.data(), m.data(), v.data(), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f);
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const auto pg = host_copy(pd, size_t(n));
  for (int64_t i = 0; i < n; ++i) CHECK(std::abs(pg[i] - p[i]) <= 1e-5f * (std::abs(p[i]) + 1.0f));
  close_bf16(copy.download(), p);
  for (float* d : {pd, gd, md, vd}) cudaFree(d);
}

TEST_CASE("CUDA casts round to nearest even and back exactly", "[cuda]") {
  REQUIRE_GPU();
  const std::vector<float> x = random(513, 10);
  float* xd = device_copy(x);
  Buf b(x.size());
  float* back = device_copy(std::vector<float>(x.size()));
  gpu::cast_f32_to_bf16(xd, b.dev, int64_t(x.size()), nullptr);
  gpu::cast_bf16_to_f32(b.dev, back, int64_t(x.size()), nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const auto r = host_copy(back, x.size());
  for (size_t i = 0; i < x.size(); ++i) CHECK(r[i] == __bfloat162float(__float2bfloat16_rn(x[i])));
  cudaFree(xd);
  cudaFree(back);
}

TEST_CASE("cuBLASLt matmul matches the CPU matmul for every transpose and a shared weight", "[cuda]") {
  REQUIRE_GPU();
  gpu::GemmContext ctx;
  const int64_t batch = 3, M = 17, N = 40, K = 72;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool shared : {false, true}) {
        if (shared && ta) continue;  // not a supported combination (kernels/cpu/matmul.h)
        DYNAMIC_SECTION("ta " << ta << " tb " << tb << " shared " << shared) {
          Buf a(random(size_t(batch * M * K), 11)), b(random(size_t((shared ? 1 : batch) * K * N), 12)),
              c(size_t(batch * M * N));
          gpu::matmul(ctx, a.dev, b.dev, c.dev, batch, M, N, K, ta, tb, shared, nullptr);
          REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
          std::vector<float> ref(size_t(batch * M * N)), mag(ref.size()), absa(a.host.size()), absb(b.host.size());
          cpu::matmul(a.host.data(), b.host.data(), ref.data(), batch, M, N, K, ta, tb, shared);
          for (size_t i = 0; i < absa.size(); ++i) absa[i] = std::abs(a.host[i]);
          for (size_t i = 0; i < absb.size(); ++i) absb[i] = std::abs(b.host[i]);
          cpu::matmul(absa.data(), absb.data(), mag.data(), batch, M, N, K, ta, tb, shared);
          const auto got = c.download();
          // Output rounded to bf16 (2^-9 of |c|) after fp32 sums in another order (K·2^-24 of
          // Σ|a||b|): 2^-8 of Σ|a||b| bounds both with room.
          for (size_t i = 0; i < got.size(); ++i) REQUIRE(std::abs(got[i] - ref[i]) <= 0x1p-8f * mag[i] + 1e-3f);
        }
      }
}
