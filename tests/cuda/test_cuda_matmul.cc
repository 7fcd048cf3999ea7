// cuBLASLt matmul against kernels/cpu/matmul for each storage overload (bf16 → bf16,
// bf16 → fp32, fp32 → fp32), every transpose, a shared weight, alpha/beta accumulation (onto C
// itself, and onto a separate X as the fused residual add / gradient sum does), operands that
// are not 256-byte aligned, and an empty inner dimension.
//
// Tolerance, from mag = |alpha|·Σ|a||b| + |beta·c| (the CPU matmul run on absolute values):
// fp32 sums in another order differ by ≤ K·2^-24 of mag (2^-17 here, K ≤ 72); a bf16 output adds
// one rounding, 2^-9 of |c| ≤ mag. So 2^-15·mag for fp32 outputs and 2^-8·mag for bf16, each
// with room.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cuda/kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;
using namespace autosp::cuda_test;

namespace {

struct Shape {
  int64_t batch, M, N, K;
  bool ta, tb, shared;
};

std::vector<float> absolute(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = std::abs(v[i]);
  return out;
}

// One GEMM with operands of In and output of Out, at element `offset` into each buffer; with
// own_x, beta scales a separate buffer X instead of C (which then holds garbage).
template <class In, class Out>
void check(gpu::GemmContext& ctx, const Shape& s, float alpha, float beta, int64_t offset, bool own_x = false) {
  const size_t na = size_t(s.batch * s.M * s.K), nb = size_t((s.shared ? 1 : s.batch) * s.K * s.N),
               nc = size_t(s.batch * s.M * s.N);
  DevBuf<In> a(random(na + size_t(offset), 11)), b(random(nb + size_t(offset), 12));
  DevBuf<Out> c(random(nc + size_t(offset), 13)), x(random(nc + size_t(offset), 14));
  const std::vector<float> a_h(a.host.begin() + offset, a.host.end()), b_h(b.host.begin() + offset, b.host.end());
  const DevBuf<Out>& acc = own_x ? x : c;
  std::vector<float> want(acc.host.begin() + offset, acc.host.end()), mag = absolute(want);
  gpu::matmul(ctx, a.dev + offset, b.dev + offset, c.dev + offset, s.batch, s.M, s.N, s.K, s.ta, s.tb, s.shared,
              nullptr, alpha, beta, own_x ? x.dev + offset : nullptr);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  cpu::matmul(a_h.data(), b_h.data(), want.data(), s.batch, s.M, s.N, s.K, s.ta, s.tb, s.shared, alpha, beta);
  cpu::matmul(absolute(a_h).data(), absolute(b_h).data(), mag.data(), s.batch, s.M, s.N, s.K, s.ta, s.tb, s.shared,
              std::abs(alpha), std::abs(beta));
  const std::vector<float> all = c.download();
  const std::vector<float> got(all.begin() + offset, all.end());
  const float tol = std::is_same_v<Out, float> ? 0x1p-15f : 0x1p-8f;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::abs(got[i] - want[i]) <= tol * mag[i] + 1e-6f))
      FAIL("element " << i << ": got " << got[i] << ", want " << want[i]);
  }
}

template <class In, class Out>
void every_transpose(float alpha, float beta, bool own_x = false) {
  gpu::GemmContext ctx;
  const int64_t batch = 3, M = 17, N = 40, K = 72;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool shared : {false, true}) {
        if (shared && ta) continue;  // not a supported combination (kernels/cpu/matmul.h)
        INFO("ta " << ta << " tb " << tb << " shared " << shared);
        check<In, Out>(ctx, {batch, M, N, K, ta, tb, shared}, alpha, beta, 0, own_x);
      }
}

}  // namespace

TEST_CASE("cuBLASLt matmul matches the CPU matmul for every transpose and a shared weight", "[cuda]") {
  REQUIRE_GPU();
  SECTION("bf16 -> bf16") { every_transpose<gpu::bf16, gpu::bf16>(1.0f, 0.0f); }
  SECTION("bf16 -> fp32") { every_transpose<gpu::bf16, float>(1.0f, 0.0f); }
  SECTION("fp32 -> fp32, fp32 compute") { every_transpose<float, float>(1.0f, 0.0f); }
}

TEST_CASE("cuBLASLt matmul scales by alpha and accumulates beta times C", "[cuda]") {
  REQUIRE_GPU();
  SECTION("bf16 -> bf16") { every_transpose<gpu::bf16, gpu::bf16>(0.5f, 1.0f); }
  SECTION("bf16 -> fp32") { every_transpose<gpu::bf16, float>(-2.0f, 1.0f); }
  SECTION("fp32 -> fp32") { every_transpose<float, float>(1.5f, -0.25f); }
}

TEST_CASE("cuBLASLt matmul adds a separate X in its epilogue, as a fused residual add", "[cuda]") {
  REQUIRE_GPU();
  SECTION("bf16 -> bf16") { every_transpose<gpu::bf16, gpu::bf16>(1.0f, 1.0f, true); }
  SECTION("fp32 -> fp32") { every_transpose<float, float>(1.0f, 1.0f, true); }
  SECTION("at element offsets") {
    gpu::GemmContext ctx;
    for (int64_t offset : {1, 8}) {
      INFO("offset " << offset);
      check<gpu::bf16, gpu::bf16>(ctx, {2, 9, 24, 40, false, true, true}, 1.0f, 1.0f, offset, true);
    }
  }
  SECTION("an empty inner dimension copies X") {
    gpu::GemmContext ctx;
    check<float, float>(ctx, {2, 5, 7, 0, false, false, false}, 1.0f, 1.0f, 0, true);
  }
}

TEST_CASE("cuBLASLt matmul accepts operands at any element offset", "[cuda]") {
  REQUIRE_GPU();
  gpu::GemmContext ctx;
  // A part of a ZeRO bucket starts wherever the previous part ended: 2-byte aligned for bf16.
  for (int64_t offset : {1, 8, 24}) {
    INFO("offset " << offset);
    check<gpu::bf16, gpu::bf16>(ctx, {2, 9, 24, 40, false, true, false}, 1.0f, 0.0f, offset);
    check<gpu::bf16, float>(ctx, {1, 9, 24, 40, true, false, false}, 1.0f, 1.0f, offset);
    check<float, float>(ctx, {2, 9, 24, 40, false, false, true}, 1.0f, 0.0f, offset);
  }
}

TEST_CASE("cuBLASLt matmul over an empty inner dimension gives beta times C", "[cuda]") {
  REQUIRE_GPU();
  gpu::GemmContext ctx;
  check<gpu::bf16, gpu::bf16>(ctx, {2, 5, 7, 0, true, false, false}, 1.0f, 0.0f, 0);
  check<float, float>(ctx, {2, 5, 7, 0, false, false, false}, 1.0f, 0.5f, 0);
}
