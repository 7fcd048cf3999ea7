// Tensors past 2^31 elements, the sizes issue 8's longest context reaches (hidden: [.long]).
//
// cuDNN attention past 2^31 elements per tensor: the 270M Llama's heads (8 of 128) over
// 2.2M tokens, the length issue 8's longest context reaches, where every Q/K/V/O and gradient
// tensor holds 2.25e9 elements and its batch stride is above INT32_MAX. A library that keeps a
// 32-bit offset anywhere fails there (a fault, or rows past 2,097,152 read or written in the
// wrong place) while every shorter test passes. Hidden ([.long]: ~50 GB of device memory and
// about a minute on an H100/H200); scripts/gpu_check.sh runs it in its --long call.
//
// The inputs make the exact answer cheap on the host: in every (token, head) row only
// dimension 0 is non-zero, q = 1, k = g_j, v = f_j, dout = 1, with g and f small integers
// (exact in bf16) from a hash of (j, head). The score of query i and key j is then s·g_j for
// every i, so with w_j = exp(s·g_j), Z_i = sum_{j<=i} w_j:
//   lse_i = log Z_i,            o_i = sum_{j<=i} w_j f_j / Z_i,
//   dV_j  = w_j S1_j,           S1_j = sum_{i>=j} 1/Z_i,
//   dQ_i  = s (A_i - o_i G_i) / Z_i,   A_i = sum_{j<=i} w_j g_j f_j,  G_i = sum_{j<=i} w_j g_j,
//   dK_j  = s w_j (f_j S1_j - S2_j),   S2_j = sum_{i>=j} o_i / Z_i,
// every other dimension 0: prefix and suffix sums in double. The backward is given the
// reference o (rounded to bf16) and lse, as the other attention tests give it the CPU's.
// Rows are checked around the first and last tokens, on both sides of 2^31 elements, and at
// random; each against |terms| (the same sums of absolute values) with bf16's 2^-7 relative
// rounding of the inputs and outputs plus fp32 accumulation over 2.2M terms: 2^-6 of that
// magnitude, plus 1e-3 absolute for lse (a log of a sum of 2.2M positive terms in fp32).
#include <catch2/catch.hpp>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace gpu = autosp::kernels::cuda;

using namespace autosp::cuda_test;

namespace {

constexpr int64_t kT = 2'200'000, kH = 8, kD = 128;

uint32_t mix(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return uint32_t(x);
}
float g_of(int64_t j, int64_t h) { return float(int(mix(uint64_t(j * kH + h)) % 3) - 1); }             // -1, 0, 1
float f_of(int64_t j, int64_t h) { return 0.5f * float(int(mix(uint64_t(j * kH + h) + 777) % 5) - 2); }  // -1 .. 1

// Column 0 of every (token, head) row of a [T, H, D] bf16 device tensor := values[T·H] (the
// other columns zeroed first).
void set_column0(bf16* x, const std::vector<float>& values) {
  std::vector<bf16> h(values.size());
  for (size_t i = 0; i < h.size(); ++i) h[i] = __float2bfloat16_rn(values[i]);
  bf16* packed = device_copy(h);  // then scattered on the device: a 2-byte-wide host copy crawls
  REQUIRE(cudaMemset(x, 0, size_t(kT * kH * kD) * sizeof(bf16)) == cudaSuccess);
  REQUIRE(cudaMemcpy2D(x, kD * sizeof(bf16), packed, sizeof(bf16), sizeof(bf16), h.size(),
                       cudaMemcpyDeviceToDevice) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  cudaFree(packed);
}

// Rows [t0, t0 + n) of a [T, H, D] bf16 device tensor, as floats.
std::vector<float> rows(const bf16* x, int64_t t0, int64_t n) {
  std::vector<bf16> h(size_t(n * kH * kD));
  REQUIRE(cudaMemcpy(h.data(), x + t0 * kH * kD, h.size() * sizeof(bf16), cudaMemcpyDeviceToHost) == cudaSuccess);
  std::vector<float> out(h.size());
  for (size_t i = 0; i < h.size(); ++i) out[i] = __bfloat162float(h[i]);
  return out;
}

struct Reference {  // per (token, head), in double
  std::vector<double> lse, o, o_mag, dq, dq_mag, dk, dk_mag, dv;
};

Reference reference(float scale) {
  const size_t n = size_t(kT * kH);
  Reference r;
  for (auto* v : {&r.lse, &r.o, &r.o_mag, &r.dq, &r.dq_mag, &r.dk, &r.dk_mag, &r.dv}) v->assign(n, 0.0);
  std::vector<double> z(n), o_used(n);
  for (int64_t h = 0; h < kH; ++h) {
    double Z = 0, F = 0, Fa = 0, A = 0, G = 0, Aa = 0, Ga = 0;
    for (int64_t i = 0; i < kT; ++i) {
      const size_t at = size_t(i * kH + h);
      const double g = g_of(i, h), f = f_of(i, h), w = std::exp(double(scale) * g);
      Z += w, F += w * f, Fa += w * std::abs(f), A += w * g * f, G += w * g;
      Aa += w * std::abs(g * f), Ga += w * std::abs(g);
      z[at] = Z;
      r.lse[at] = std::log(Z);
      r.o[at] = F / Z;
      r.o_mag[at] = Fa / Z;
      o_used[at] = double(round_to<bf16>(float(F / Z)));  // what the backward is given
      r.dq[at] = scale * (A - o_used[at] * G) / Z;
      r.dq_mag[at] = scale * (Aa + std::abs(o_used[at]) * Ga) / Z;
    }
    double S1 = 0, S2 = 0, S2a = 0;
    for (int64_t j = kT - 1; j >= 0; --j) {
      const size_t at = size_t(j * kH + h);
      S1 += 1 / z[at], S2 += o_used[at] / z[at], S2a += std::abs(o_used[at]) / z[at];
      const double f = f_of(j, h), w = std::exp(double(scale) * g_of(j, h));
      r.dv[at] = w * S1;
      r.dk[at] = scale * w * (f * S1 - S2);
      r.dk_mag[at] = scale * w * (std::abs(f) * S1 + S2a);
    }
  }
  return r;
}

// Rows [t0, t0 + n) of x: column 0 of each (token, head) equals want within 2^-6 of mag (dV:
// want itself, all its terms being positive), the other columns 0.
void check_rows(const char* what, const bf16* x, int64_t t0, int64_t n, const std::vector<double>& want,
                const std::vector<double>* mag) {
  const std::vector<float> got = rows(x, t0, n);
  for (int64_t t = t0; t < t0 + n; ++t)
    for (int64_t h = 0; h < kH; ++h) {
      const size_t at = size_t(t * kH + h), row = size_t(((t - t0) * kH + h) * kD);
      const double m = mag ? (*mag)[at] : std::abs(want[at]);
      INFO(what << " token " << t << " head " << h << ": got " << got[row] << ", want " << want[at] << ", magnitude "
                << m);
      REQUIRE(std::abs(double(got[row]) - want[at]) <= 0x1p-6 * m + 1e-6);
      for (int64_t d = 1; d < kD; ++d) REQUIRE(got[row + size_t(d)] == 0.0f);
    }
}

}  // namespace

TEST_CASE("cuDNN attention past 2^31 elements per tensor (2.2M tokens, 8 heads of 128) is exact where it should be",
          "[.long]") {
  REQUIRE_GPU();
  if (!gpu::attention_cudnn_built()) {
    WARN("skipped: built without the cuDNN frontend");
    return;
  }
  static_assert(kT * kH * kD > (int64_t(1) << 31), "the point of the test");
  const float scale = 1.0f / std::sqrt(float(kD));
  const size_t n = size_t(kT * kH * kD);
  bf16 *q, *k, *v, *o, *dout, *dq, *dk, *dv;
  for (bf16** p : {&q, &k, &v, &o, &dout, &dq, &dk, &dv}) REQUIRE(cudaMalloc(p, n * sizeof(bf16)) == cudaSuccess);
  float* lse = nullptr;
  REQUIRE(cudaMalloc(&lse, size_t(kT * kH) * sizeof(float)) == cudaSuccess);

  std::vector<float> ones(size_t(kT * kH), 1.0f), g(ones.size()), f(ones.size());
  for (int64_t j = 0; j < kT; ++j)
    for (int64_t h = 0; h < kH; ++h) g[size_t(j * kH + h)] = g_of(j, h), f[size_t(j * kH + h)] = f_of(j, h);
  set_column0(q, ones);
  set_column0(k, g);
  set_column0(v, f);
  set_column0(dout, ones);
  const Reference ref = reference(scale);

  // Rows before, across and after 2^31 elements (token 2,097,152), the last ones, and random.
  std::vector<std::pair<int64_t, int64_t>> spans = {{0, 64}, {2'097'152 - 96, 192}, {kT - 64, 64}};
  std::mt19937 rng(5);
  for (int i = 0; i < 8; ++i) spans.push_back({int64_t(rng() % uint32_t(kT - 32)), 32});

  gpu::AttentionContext ctx;
  const gpu::AttentionArgs a{1, kT, kT, kH, kH, kD, /*causal=*/true, scale};
  REQUIRE(gpu::attention_forward_cudnn(ctx, a, q, k, v, o, lse, nullptr));  // false: cuDNN declined the shape
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<float> got_lse = host_copy(lse, size_t(kT * kH));  // [1, H, T]
  for (const auto& [t0, len] : spans) {
    check_rows("o", o, t0, len, ref.o, &ref.o_mag);
    for (int64_t t = t0; t < t0 + len; ++t)
      for (int64_t h = 0; h < kH; ++h) {
        INFO("lse token " << t << " head " << h);
        REQUIRE(std::abs(double(got_lse[size_t(h * kT + t)]) - ref.lse[size_t(t * kH + h)]) <= 1e-3);
      }
  }

  // The backward from the reference o and lse.
  std::vector<float> o_ref(size_t(kT * kH)), lse_ref(size_t(kT * kH));
  for (int64_t t = 0; t < kT; ++t)
    for (int64_t h = 0; h < kH; ++h) {
      o_ref[size_t(t * kH + h)] = float(ref.o[size_t(t * kH + h)]);
      lse_ref[size_t(h * kT + t)] = float(ref.lse[size_t(t * kH + h)]);
    }
  set_column0(o, o_ref);
  REQUIRE(cudaMemcpy(lse, lse_ref.data(), lse_ref.size() * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(gpu::attention_backward_cudnn(ctx, a, q, k, v, o, lse, dout, dq, dk, dv, nullptr));
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  for (const auto& [t0, len] : spans) {
    check_rows("dq", dq, t0, len, ref.dq, &ref.dq_mag);
    check_rows("dk", dk, t0, len, ref.dk, &ref.dk_mag);
    check_rows("dv", dv, t0, len, ref.dv, nullptr);
  }
  for (bf16* p : {q, k, v, o, dout, dq, dk, dv}) cudaFree(p);
  cudaFree(lse);
}

// cuBLASLt GEMMs of the same length: the Llama MLP's up projection, Y[T, 2816] = X[T, 1024]·Wᵀ
// (Y holds 6.2e9 elements), and its weight gradient dW = Yᵀ·X, a reduction over K = T. X's
// rows repeat a random 4099-row tile (prime, so no power-of-two offset wrap can land on an
// identical row). Sampled rows of Y, on both sides of 2^31 elements of X and of Y, against the
// same GEMM on just those rows (a small problem, far from any 32-bit limit): the kernels may
// differ, so within 2^-7 of the row's magnitude (bf16 output rounding, fp32 accumulation
// either way). dW in fp32 against the sum of four GEMMs over quarters of T: only the
// summation order differs, 1e-4 of its magnitude.
TEST_CASE("cuBLASLt GEMMs past 2^31 elements (2.2M rows) equal the same GEMMs in pieces", "[.long]") {
  REQUIRE_GPU();
  const int64_t K = 1024, N = 2816, tile = 4099;
  static_assert(kT * N > (int64_t(1) << 31) && kT * K > (int64_t(1) << 31), "the point of the test");
  const std::vector<float> r = random(size_t(tile * K), 21), w = random(size_t(N * K), 22, 0.05f);
  Buf rt(r), wt(w);
  bf16 *x, *y;
  REQUIRE(cudaMalloc(&x, size_t(kT * K) * sizeof(bf16)) == cudaSuccess);
  REQUIRE(cudaMalloc(&y, size_t(kT * N) * sizeof(bf16)) == cudaSuccess);
  for (int64_t t0 = 0; t0 < kT; t0 += tile)
    REQUIRE(cudaMemcpy(x + t0 * K, rt.dev, size_t(std::min(tile, kT - t0) * K) * sizeof(bf16),
                       cudaMemcpyDeviceToDevice) == cudaSuccess);
  gpu::GemmContext ctx;
  gpu::matmul(ctx, x, wt.dev, y, 1, kT, N, K, /*trans_a=*/false, /*trans_b=*/true, false, nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);

  Buf piece(size_t(256 * N));
  for (const int64_t t0 : {int64_t(0), (int64_t(1) << 31) / K - 128, (int64_t(1) << 31) / N - 128, kT - 256}) {
    gpu::matmul(ctx, x + t0 * K, wt.dev, piece.dev, 1, 256, N, K, false, true, false, nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const std::vector<float> want = piece.download();
    std::vector<bf16> got(want.size());
    REQUIRE(cudaMemcpy(got.data(), y + t0 * N, got.size() * sizeof(bf16), cudaMemcpyDeviceToHost) == cudaSuccess);
    for (int64_t i = 0; i < 256; ++i) {
      float mag = 0;
      for (int64_t j = 0; j < N; ++j) mag = std::max(mag, std::abs(want[size_t(i * N + j)]));
      for (int64_t j = 0; j < N; ++j) {
        const size_t at = size_t(i * N + j);
        INFO("row " << t0 + i << " column " << j);
        REQUIRE(std::abs(__bfloat162float(got[at]) - want[at]) <= 0x1p-7f * mag);
      }
    }
  }

  // dW[N, K] = Yᵀ·X over all T rows, and as four accumulated quarters.
  DevBuf<float> whole(size_t(N * K)), parts(size_t(N * K));
  gpu::matmul(ctx, y, x, whole.dev, 1, N, K, kT, /*trans_a=*/true, false, false, nullptr);
  const int64_t q = kT / 4;
  for (int64_t p = 0; p < 4; ++p) {
    const int64_t t0 = p * q, n = p == 3 ? kT - t0 : q;
    gpu::matmul(ctx, y + t0 * N, x + t0 * K, parts.dev, 1, N, K, n, true, false, false, nullptr, 1.0f,
                p == 0 ? 0.0f : 1.0f);
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<float> a = whole.download(), b = parts.download();
  float mag = 0;
  for (float v : b) mag = std::max(mag, std::abs(v));
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("dW element " << i << ": " << a[i] << " vs " << b[i]);
    REQUIRE(std::abs(a[i] - b[i]) <= 1e-4f * mag);
  }
  cudaFree(x);
  cudaFree(y);
}
