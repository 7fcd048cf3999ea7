// Fused cross-entropy against the full-logits formula in double (logits = h·wᵀ, log-softmax,
// NLL), with ignored rows, a vocabulary that is not a multiple of the chunk, more rows than
// one row block, and a chunk larger than the vocabulary. Gradients are checked against the
// analytic double formula, which is itself checked by central finite differences, and the
// kernel's own gradient against finite differences of the kernel's loss on a tiny case.
//
// Tolerances (measured as max |got - ref| / max |ref| over a tensor).
//   lse: 4e-6. Logits are fp32 dot products over D = 32 O(1) terms (error ~sqrt(D)·2^-24
//     relative to |h||w|); lse ≈ log V + max logit ≈ 7 sums V ≤ 1000 vexp terms (≤ 2 ulp
//     each) in fp32: ~sqrt(V)·2^-24 ≈ 2e-6 relative to the sum. Seen: 6e-7.
//   loss_sum: 1e-5 relative: per-row lse - logit terms each good to ~1e-6 · 7, accumulated in
//     double, against a total of O(N · log V) ≈ 2000. Seen: 3e-8.
//   dh, dw: 1e-5. dlogits = p - onehot is good to ~1e-7 absolute; dh sums V ≤ 1000 and dw sums
//     N ≤ 300 terms of mixed sign, which cancel to a total much smaller than its terms, so the
//     error relative to the result is larger than sqrt(n)·2^-24 alone suggests.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/rng.h"
#include "kernels/cpu/cross_entropy.h"

using namespace autosp::kernels::cpu;

namespace {

struct Problem {
  CrossEntropyArgs a;
  std::vector<float> h, w;
  std::vector<int32_t> targets;
};

Problem make_problem(int64_t N, int64_t D, int64_t V, int64_t chunk, int32_t ignore, int ignore_every) {
  Problem p;
  p.a.N = N, p.a.D = D, p.a.V = V, p.a.chunk = chunk, p.a.ignore_index = ignore;
  autosp::Rng rh(11, 1), rw(11, 2), rt(11, 3);
  p.h.resize(N * D), p.w.resize(V * D), p.targets.resize(N);
  for (int64_t i = 0; i < N * D; ++i) p.h[i] = rh.normal(i);
  // w / sqrt(D) keeps logits O(1), as an initialised LM head does.
  for (int64_t i = 0; i < V * D; ++i) p.w[i] = rw.normal(i) / std::sqrt(float(D));
  for (int64_t i = 0; i < N; ++i)
    p.targets[i] = (ignore_every > 0 && i % ignore_every == 1) ? ignore : int32_t(rt.bits(i)[0] % V);
  return p;
}

struct Ref {
  double loss = 0, count = 0;
  std::vector<double> lse, dh, dw;
};

// Full logits in double; dloss scales the gradients like the kernel's argument.
Ref reference(const CrossEntropyArgs& a, const std::vector<float>& h, const std::vector<float>& w,
              const std::vector<int32_t>& t, double dloss) {
  Ref r;
  r.lse.resize(a.N), r.dh.assign(a.N * a.D, 0.0), r.dw.assign(a.V * a.D, 0.0);
  std::vector<double> logit(a.V);
  for (int64_t i = 0; i < a.N; ++i) {
    double mx = -INFINITY;
    for (int64_t v = 0; v < a.V; ++v) {
      logit[v] = 0;
      for (int64_t d = 0; d < a.D; ++d) logit[v] += double(h[i * a.D + d]) * w[v * a.D + d];
      mx = std::max(mx, logit[v]);
    }
    double sum = 0;
    for (int64_t v = 0; v < a.V; ++v) sum += std::exp(logit[v] - mx);
    r.lse[i] = mx + std::log(sum);
    if (t[i] == a.ignore_index) continue;
    r.loss += r.lse[i] - logit[t[i]];
    r.count += 1;
    for (int64_t v = 0; v < a.V; ++v) {
      const double g = dloss * (std::exp(logit[v] - r.lse[i]) - (v == t[i] ? 1.0 : 0.0));
      for (int64_t d = 0; d < a.D; ++d) {
        r.dh[i * a.D + d] += g * w[v * a.D + d];
        r.dw[v * a.D + d] += g * h[i * a.D + d];
      }
    }
  }
  return r;
}

double rel_error(const std::vector<float>& got, const std::vector<double>& ref) {
  REQUIRE(got.size() == ref.size());
  double err = 0, scale = 1e-30;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    err = std::max(err, std::abs(got[i] - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return err / scale;
}

void expect_matches_reference(const Problem& p, float dloss) {
  const CrossEntropyArgs& a = p.a;
  INFO("N=" << a.N << " D=" << a.D << " V=" << a.V << " chunk=" << a.chunk);
  float loss = -1, count = -1;
  std::vector<float> lse(a.N, NAN), dh(a.N * a.D, NAN), dw(a.V * a.D, NAN);  // NaN: must be overwritten
  cross_entropy_forward(a, p.h.data(), p.w.data(), p.targets.data(), &loss, &count, lse.data());
  cross_entropy_backward(a, p.h.data(), p.w.data(), p.targets.data(), lse.data(), dloss, dh.data(), dw.data());
  const Ref r = reference(a, p.h, p.w, p.targets, dloss);
  CHECK(count == r.count);
  CHECK(std::abs(loss - r.loss) <= 1e-5 * std::max(1.0, std::abs(r.loss)));
  CHECK(rel_error(lse, r.lse) <= 4e-6);  // every row, ignored ones too
  CHECK(rel_error(dh, r.dh) <= 1e-5);
  CHECK(rel_error(dw, r.dw) <= 1e-5);
}

}  // namespace

TEST_CASE("cross_entropy matches full-logits log-softmax NLL over row blocks and ragged chunks",
          "[cross_entropy]") {
  // 300 rows = one 256-row block + 44; V = 1000 = 2 chunks of 384 + 232.
  expect_matches_reference(make_problem(300, 32, 1000, 384, -100, 7), 1.0f);
  // Scaled objective (mean loss): gradients scale with dloss.
  expect_matches_reference(make_problem(300, 32, 1000, 384, -100, 7), 1.0f / 257);
}

TEST_CASE("cross_entropy with a chunk larger than the vocabulary and no ignored rows",
          "[cross_entropy]") {
  expect_matches_reference(make_problem(37, 16, 50, 4096, -1, 0), 1.0f);
  expect_matches_reference(make_problem(1, 16, 50, 7, -1, 0), 1.0f);  // one row, 8 chunks
}

TEST_CASE("cross_entropy with every row ignored gives zero loss, count and gradients",
          "[cross_entropy]") {
  Problem p = make_problem(20, 8, 30, 16, -1, 0);
  std::fill(p.targets.begin(), p.targets.end(), -1);
  float loss = -1, count = -1;
  std::vector<float> lse(20), dh(20 * 8, NAN), dw(30 * 8, NAN);
  cross_entropy_forward(p.a, p.h.data(), p.w.data(), p.targets.data(), &loss, &count, lse.data());
  cross_entropy_backward(p.a, p.h.data(), p.w.data(), p.targets.data(), lse.data(), 1.0f, dh.data(), dw.data());
  CHECK(loss == 0.0f);
  CHECK(count == 0.0f);
  CHECK(std::all_of(dh.begin(), dh.end(), [](float x) { return x == 0.0f; }));
  CHECK(std::all_of(dw.begin(), dw.end(), [](float x) { return x == 0.0f; }));
  CHECK(std::all_of(lse.begin(), lse.end(), [](float x) { return std::isfinite(x); }));
}

TEST_CASE("cross_entropy gradients agree with central finite differences", "[cross_entropy]") {
  Problem p = make_problem(3, 4, 7, 3, -1, 0);
  p.targets[1] = -1;  // one ignored row: its h gets no gradient
  const CrossEntropyArgs& a = p.a;

  SECTION("of the double reference (tight: h = 2^-16 gives error ~1e-10)") {
    const Ref r = reference(a, p.h, p.w, p.targets, 1.0);
    const double h = 1.0 / 65536;  // x ± h is exact in float for |x| < 128
    for (auto [vec, grad] : {std::pair{&p.h, &r.dh}, std::pair{&p.w, &r.dw}})
      for (size_t i = 0; i < vec->size(); ++i) {
        const float x = (*vec)[i];
        (*vec)[i] = float(x + h);
        const double up = reference(a, p.h, p.w, p.targets, 1.0).loss;
        (*vec)[i] = float(x - h);
        const double down = reference(a, p.h, p.w, p.targets, 1.0).loss;
        (*vec)[i] = x;
        CHECK(std::abs((up - down) / (2 * h) - (*grad)[i]) <= 1e-6);
      }
  }
  SECTION("of the fp32 kernel itself (loose: eps = 1e-2 on a loss of ~4 in fp32)") {
    // Truncation ~eps²·|L'''| ≈ 1e-4, round-off ~4·2^-24/eps ≈ 4e-5: 1e-3 is safe and still far
    // below an O(0.1) error from a wrong sign or a missing -1 at the target.
    auto loss_of = [&] {
      float loss, count;
      std::vector<float> lse(a.N);
      cross_entropy_forward(a, p.h.data(), p.w.data(), p.targets.data(), &loss, &count, lse.data());
      return double(loss);
    };
    float loss, count;
    std::vector<float> lse(a.N), dh(a.N * a.D), dw(a.V * a.D);
    cross_entropy_forward(a, p.h.data(), p.w.data(), p.targets.data(), &loss, &count, lse.data());
    cross_entropy_backward(a, p.h.data(), p.w.data(), p.targets.data(), lse.data(), 1.0f, dh.data(), dw.data());
    const float eps = 1e-2f;
    for (auto [vec, grad] : {std::pair{&p.h, &dh}, std::pair{&p.w, &dw}})
      for (size_t i = 0; i < vec->size(); ++i) {
        const float x = (*vec)[i];
        (*vec)[i] = x + eps;
        const double up = loss_of();
        (*vec)[i] = x - eps;
        const double down = loss_of();
        (*vec)[i] = x;
        CHECK(std::abs((up - down) / (2.0 * eps) - (*grad)[i]) <= 1e-3);
      }
  }
}
