// Flash attention (forward and backward) against a naive double-precision softmax(QKᵀ)V
// that builds every score row with the header's masking rule; the reference backward is
// itself checked against central finite differences.
//
// Tolerances. Errors are measured as max |got - ref| / max(1, max |ref|) over a tensor.
// fp32 sums of n terms with random signs err by ~sqrt(n)·2^-24 (the worst case n·2^-24 needs
// adversarial data); the inputs are random normals, so the bounds are a few times that:
//   o, lse: 4e-6. Scores are dot products over D ≤ 128 terms of O(1); exp is vexp (≤ 2 ulp);
//     o is a convex combination of Tk ≤ 130 rows of v: sqrt(130)·6e-8 ≈ 7e-7 (seen: 5e-7).
//   dq, dk, dv: 1e-5. The same sums, plus dS = P∘(dP - delta) cancels where P is peaked, and
//     dk/dv sum over all queries of the GQA group (≤ 4·130 terms) (seen: 7e-7).
// A masking or block-boundary bug changes whole entries by O(0.1), far above these.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <cblas.h>
#include <omp.h>

#include "kernels/cpu/attention.h"
#include "tests/kernels/kernel_test_util.h"

using namespace autosp::kernels::cpu;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// One problem: sizes, optional positions/segments (empty = null pointer), inputs and dO.
struct Case {
  AttentionArgs a;
  std::vector<int32_t> qpos, kpos, qseg, kseg;
  std::vector<float> q, k, v, dout;

  AttentionArgs args() const {
    AttentionArgs r = a;
    r.q_pos = qpos.empty() ? nullptr : qpos.data();
    r.k_pos = kpos.empty() ? nullptr : kpos.data();
    r.q_seg = qseg.empty() ? nullptr : qseg.data();
    r.k_seg = kseg.empty() ? nullptr : kseg.data();
    return r;
  }
};

std::vector<float> normal(int64_t n, uint64_t stream) { return autosp::testing::normal_vec(n, 1234, stream); }

Case make_case(int64_t B, int64_t Tq, int64_t Tk, int64_t H, int64_t Hkv, int64_t D, bool causal) {
  Case c;
  c.a.B = B, c.a.Tq = Tq, c.a.Tk = Tk, c.a.H = H, c.a.Hkv = Hkv, c.a.D = D, c.a.causal = causal;
  c.a.scale = 1.0f / std::sqrt(static_cast<float>(D));
  c.q = normal(B * Tq * H * D, 1);
  c.k = normal(B * Tk * Hkv * D, 2);
  c.v = normal(B * Tk * Hkv * D, 3);
  c.dout = normal(B * Tq * H * D, 4);
  return c;
}

struct Result {
  std::vector<double> o, lse, dq, dk, dv;
};

Result run_kernel(const Case& c) {
  const AttentionArgs a = c.args();
  // NaN-filled: every output element must be written ("overwritten" in the header).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> o(c.q.size(), nan), lse(a.B * a.H * a.Tq, nan), dq(c.q.size(), nan), dk(c.k.size(), nan),
      dv(c.v.size(), nan);
  attention_forward(a, c.q.data(), c.k.data(), c.v.data(), o.data(), lse.data());
  attention_backward(a, c.q.data(), c.k.data(), c.v.data(), o.data(), lse.data(), c.dout.data(), dq.data(),
                     dk.data(), dv.data());
  auto d = [](const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); };
  return {d(o), d(lse), d(dq), d(dk), d(dv)};
}

// Naive reference in double: per (b, h, i) the full score row under the header's rule.
Result run_reference(const Case& c) {
  const AttentionArgs& a = c.a;
  const int64_t D = a.D, group = a.H / a.Hkv;
  Result r{std::vector<double>(c.q.size()), std::vector<double>(a.B * a.H * a.Tq),
           std::vector<double>(c.q.size()), std::vector<double>(c.k.size()), std::vector<double>(c.v.size())};
  auto qi = [&](int64_t b, int64_t i, int64_t h) { return ((b * a.Tq + i) * a.H + h) * D; };
  auto kj = [&](int64_t b, int64_t j, int64_t g) { return ((b * a.Tk + j) * a.Hkv + g) * D; };
  std::vector<double> p(a.Tk), dp(a.Tk);
  for (int64_t b = 0; b < a.B; ++b)
    for (int64_t h = 0; h < a.H; ++h)
      for (int64_t i = 0; i < a.Tq; ++i) {
        const int64_t g = h / group;
        const int32_t qp = c.qpos.empty() ? int32_t(i) : c.qpos[b * a.Tq + i];
        double mx = -kInf;
        for (int64_t j = 0; j < a.Tk; ++j) {
          const int32_t kp = c.kpos.empty() ? int32_t(j) : c.kpos[b * a.Tk + j];
          const bool seg_ok = c.qseg.empty() || c.qseg[b * a.Tq + i] == c.kseg[b * a.Tk + j];
          p[j] = -kInf;
          if ((!a.causal || kp <= qp) && seg_ok) {
            double s = 0;
            for (int64_t d = 0; d < D; ++d) s += double(c.q[qi(b, i, h) + d]) * c.k[kj(b, j, g) + d];
            p[j] = s * a.scale;
          }
          mx = std::max(mx, p[j]);
        }
        const int64_t row = (b * a.H + h) * a.Tq + i;
        if (mx == -kInf) {  // sees no key: o = 0, lse = -inf, no gradient
          r.lse[row] = -kInf;
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < a.Tk; ++j) sum += (p[j] = std::exp(p[j] - mx));
        for (int64_t j = 0; j < a.Tk; ++j) p[j] /= sum;
        r.lse[row] = mx + std::log(sum);
        // o = P·V ; dP = dO·Vᵀ ; delta = Σ P dP ; dS = P (dP - delta)
        double delta = 0;
        for (int64_t j = 0; j < a.Tk; ++j) {
          dp[j] = 0;
          for (int64_t d = 0; d < D; ++d) {
            r.o[qi(b, i, h) + d] += p[j] * c.v[kj(b, j, g) + d];
            dp[j] += double(c.dout[qi(b, i, h) + d]) * c.v[kj(b, j, g) + d];
          }
          delta += p[j] * dp[j];
        }
        for (int64_t j = 0; j < a.Tk; ++j) {
          const double ds = p[j] * (dp[j] - delta) * a.scale;
          for (int64_t d = 0; d < D; ++d) {
            r.dq[qi(b, i, h) + d] += ds * c.k[kj(b, j, g) + d];
            r.dk[kj(b, j, g) + d] += ds * c.q[qi(b, i, h) + d];
            r.dv[kj(b, j, g) + d] += p[j] * c.dout[qi(b, i, h) + d];
          }
        }
      }
  return r;
}

// max |got - ref| / max(1, max|ref|); -inf must match -inf exactly, any NaN fails.
double rel_error(const std::vector<double>& got, const std::vector<double>& ref) {
  REQUIRE(got.size() == ref.size());
  double err = 0, scale = 1;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(got[i])) return kInf;
    if (std::isinf(ref[i]) || std::isinf(got[i])) {
      if (got[i] != ref[i]) return kInf;
      continue;
    }
    err = std::max(err, std::abs(got[i] - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return err / scale;
}

// The kernel picks its tiling and backward schedule from the thread counts: 128×128 tiles
// when OpenBLAS is single-threaded, 64×64 (32×64 at D = 128) otherwise; one fused backward
// pass when the (batch, kv head) pairs share out evenly over the OpenMP threads, two passes
// otherwise (attention.cc says why). Each case runs under every combination.
class ThreadCounts {
 public:
  ThreadCounts(int blas, int omp) : blas_(openblas_get_num_threads()), omp_(omp_get_max_threads()) {
    openblas_set_num_threads(blas);
    omp_set_num_threads(omp);
  }
  ~ThreadCounts() {
    openblas_set_num_threads(blas_);
    omp_set_num_threads(omp_);
  }

 private:
  int blas_, omp_;
};

void expect_matches_reference(const Case& c) {
  const Result ref = run_reference(c);
  // 3 OpenMP threads never divide B·Hkv here (≤ 4 pairs): two passes, for the cases big enough
  // to be threaded at all.
  for (auto [blas, omp] : {std::pair{1, 1}, std::pair{1, 3}, std::pair{2, 1}, std::pair{2, 3}}) {
    INFO("OpenBLAS threads = " << blas << ", OpenMP threads = " << omp);
    const ThreadCounts tc(blas, omp);
    const Result got = run_kernel(c);
    CHECK(rel_error(got.o, ref.o) <= 4e-6);
    CHECK(rel_error(got.lse, ref.lse) <= 4e-6);
    CHECK(rel_error(got.dq, ref.dq) <= 1e-5);
    CHECK(rel_error(got.dk, ref.dk) <= 1e-5);
    CHECK(rel_error(got.dv, ref.dv) <= 1e-5);
  }
}

}  // namespace

TEST_CASE("attention matches the naive reference, causal and not, for lengths off the block size",
          "[attention]") {
  for (int64_t T : {1, 37, 130}) {
    for (bool causal : {true, false}) {
      INFO("T = " << T << ", causal = " << causal);
      expect_matches_reference(make_case(2, T, T, 2, 2, 16, causal));
    }
  }
}

TEST_CASE("attention handles the head dims of real models (64, 128)", "[attention]") {
  for (int64_t D : {64, 128}) {
    INFO("D = " << D);
    expect_matches_reference(make_case(1, 130, 130, 2, 1, D, true));
  }
}

TEST_CASE("attention with GQA uses kv head h / (H / Hkv) and sums dK, dV over the group",
          "[attention]") {
  for (int64_t Hkv : {2, 1}) {
    INFO("H = 4, Hkv = " << Hkv);
    expect_matches_reference(make_case(2, 70, 70, 4, Hkv, 16, true));
    expect_matches_reference(make_case(1, 70, 70, 4, Hkv, 16, false));
  }
}

TEST_CASE("attention with document masks attends within a segment only", "[attention]") {
  for (bool causal : {true, false}) {
    INFO("causal = " << causal);
    Case c = make_case(2, 130, 130, 4, 2, 16, causal);
    // Batch 0: documents of 20, 50, 60 tokens (boundaries inside and across blocks); batch 1:
    // one long document then a 1-token one.
    for (int64_t i = 0; i < 130; ++i) c.qseg.push_back(i < 20 ? 0 : i < 70 ? 1 : 2);
    for (int64_t i = 0; i < 130; ++i) c.qseg.push_back(i < 129 ? 5 : 6);
    c.kseg = c.qseg;
    expect_matches_reference(c);
  }
}

TEST_CASE("attention with explicit positions and Tq != Tk, some query rows seeing no key",
          "[attention]") {
  // Ring step: keys are positions 200..269, queries 0..299. Rows 0..199 see nothing (whole
  // query blocks for any tile size up to 128, and part of the next): they must give o = 0,
  // lse = -inf, zero gradients and no NaN; rows 200..299 see a causal prefix of the keys.
  const int64_t Tq = 300, hidden = 200, H = 4, D = 16;
  Case c = make_case(1, Tq, 70, H, 2, D, true);
  for (int32_t i = 0; i < Tq; ++i) c.qpos.push_back(i);
  for (int32_t j = 0; j < 70; ++j) c.kpos.push_back(hidden + j);
  const Result got = run_kernel(c);
  expect_matches_reference(c);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < hidden; ++i) {
      REQUIRE(got.lse[h * Tq + i] == -kInf);
      for (int64_t d = 0; d < D; ++d) {
        REQUIRE(got.o[(i * H + h) * D + d] == 0.0);
        REQUIRE(got.dq[(i * H + h) * D + d] == 0.0);
      }
    }
}

TEST_CASE("attention with zigzag (non-monotone) positions skips only truly hidden blocks",
          "[attention]") {
  // Zigzag layout of rank 0 of 2: chunks 0 and 3 of a 4-chunk sequence, i.e. positions
  // 0..47 then 144..191, against keys of the other rank's chunks 1 and 2 (48..143).
  Case c = make_case(2, 96, 96, 2, 2, 16, true);
  for (int64_t b = 0; b < 2; ++b) {
    for (int32_t i = 0; i < 96; ++i) c.qpos.push_back(i < 48 ? i : 96 + i);
    for (int32_t j = 0; j < 96; ++j) c.kpos.push_back(48 + j);
  }
  expect_matches_reference(c);
  c.kpos = c.qpos;  // the diagonal step: own chunks against themselves
  expect_matches_reference(c);
}

TEST_CASE("attention over two key halves merged by lse equals attention over all keys, and the "
          "per-half backward with the merged lse and o sums to the full gradient",
          "[attention]") {
  // This is how ring attention uses the kernel: the property that makes it exact.
  const int64_t T = 130, half = 65, H = 2, D = 16;
  Case full = make_case(1, T, T, H, H, D, true);
  Result ref = run_kernel(full);
  std::vector<float> o(T * H * D), lse(H * T), dq(T * H * D), dk(T * H * D), dv(T * H * D);
  std::vector<float> parts_o[2], parts_lse[2];
  std::vector<int32_t> qpos(T), kpos[2];
  for (int32_t i = 0; i < T; ++i) qpos[i] = i;
  for (int p = 0; p < 2; ++p) {
    AttentionArgs a = full.a;
    a.Tk = half;
    for (int32_t j = 0; j < half; ++j) kpos[p].push_back(p * half + j);
    a.q_pos = qpos.data(), a.k_pos = kpos[p].data();
    parts_o[p].resize(T * H * D), parts_lse[p].resize(H * T);
    attention_forward(a, full.q.data(), full.k.data() + p * half * H * D, full.v.data() + p * half * H * D,
                      parts_o[p].data(), parts_lse[p].data());
  }
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < T; ++i) {
      const float l0 = parts_lse[0][h * T + i], l1 = parts_lse[1][h * T + i];
      const float m = std::max(l0, l1), l = m + std::log(std::exp(l0 - m) + std::exp(l1 - m));
      lse[h * T + i] = l;
      for (int64_t d = 0; d < D; ++d) {
        const int64_t at = (i * H + h) * D + d;
        // A part with lse = -inf contributes weight exp(-inf) = 0 (its o is 0 too).
        o[at] = parts_o[0][at] * std::exp(l0 - l) + parts_o[1][at] * std::exp(l1 - l);
      }
    }
  CHECK(rel_error(std::vector<double>(o.begin(), o.end()), ref.o) <= 4e-6);
  CHECK(rel_error(std::vector<double>(lse.begin(), lse.end()), ref.lse) <= 4e-6);

  std::fill(dq.begin(), dq.end(), 0.0f);
  std::vector<float> dq_part(T * H * D);
  for (int p = 0; p < 2; ++p) {
    AttentionArgs a = full.a;
    a.Tk = half, a.q_pos = qpos.data(), a.k_pos = kpos[p].data();
    const int64_t off = p * half * H * D;
    attention_backward(a, full.q.data(), full.k.data() + off, full.v.data() + off, o.data(), lse.data(),
                       full.dout.data(), dq_part.data(), dk.data() + off, dv.data() + off);
    for (size_t i = 0; i < dq.size(); ++i) dq[i] += dq_part[i];
  }
  CHECK(rel_error(std::vector<double>(dq.begin(), dq.end()), ref.dq) <= 1e-5);
  CHECK(rel_error(std::vector<double>(dk.begin(), dk.end()), ref.dk) <= 1e-5);
  CHECK(rel_error(std::vector<double>(dv.begin(), dv.end()), ref.dv) <= 1e-5);
}

TEST_CASE("attention backward is bitwise reproducible", "[attention]") {
  const Case c = make_case(2, 130, 130, 4, 2, 16, true);
  const Result r1 = run_kernel(c), r2 = run_kernel(c);
  CHECK(r1.dq == r2.dq);
  CHECK(r1.dk == r2.dk);
  CHECK(r1.dv == r2.dv);
}

TEST_CASE("the reference attention gradient agrees with central finite differences", "[attention]") {
  // Objective L = Σ dO ∘ O in double, so dL/dx is what the reference backward returns. With
  // h = 1e-5 the truncation error is ~h²·|L'''| ≈ 1e-10 and round-off ~1e-16/h ≈ 1e-11, so
  // 1e-6 is a tight bound for a correct reference, and a wrong term is off by O(0.1).
  Case c = make_case(1, 5, 5, 2, 1, 3, true);
  c.qseg = {0, 0, 1, 1, 1};
  c.kseg = c.qseg;
  const Result ref = run_reference(c);
  auto objective = [&](const Case& x) {
    const Result r = run_reference(x);
    double L = 0;
    for (size_t i = 0; i < r.o.size(); ++i) L += r.o[i] * x.dout[i];
    return L;
  };
  // Inputs are floats; h = 2^-16 is a multiple of the float ulp of any |x| < 128, so x ± h is
  // exact and the difference quotient sees exactly 2h.
  const double h = 1.0 / 65536;
  auto check = [&](std::vector<float> Case::*field, const std::vector<double>& grad, const char* name) {
    for (size_t i = 0; i < grad.size(); ++i) {
      Case plus = c, minus = c;
      (plus.*field)[i] += float(h);
      (minus.*field)[i] -= float(h);
      const double fd = (objective(plus) - objective(minus)) / (2 * h);
      INFO(name << "[" << i << "]: fd " << fd << " vs analytic " << grad[i]);
      CHECK(std::abs(fd - grad[i]) <= 1e-6);
    }
  };
  check(&Case::q, ref.dq, "dq");
  check(&Case::k, ref.dk, "dk");
  check(&Case::v, ref.dv, "dv");
}
