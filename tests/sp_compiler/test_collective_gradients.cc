// The collectives' VJP rules (ir/ops_collective.cc), checked across ranks against central
// finite differences of the true SPMD objective, through the path training uses: builder
// graph -> autodiff(world) -> lower -> executor on a local mesh (ranks as threads).
//
// Every rank runs the same graph: parameter x (a per-rank tensor x_r: its sharding is left
// `none`, so autodiff adds no all_reduce and only the collectives' own rules are exercised)
// -> body -> y_r; loss = all_reduce_world(sum(y_r * R_r)) with a fixed per-rank random R_r.
// The loss is thus the replicated total L = Σ_r sum(y_r · R_r), and with the seed d_loss =
// 1/P on every rank, rank q's "grad.x" must be ∂L/∂x_q. The finite differences perturb one
// element of x on one rank q and read L (identical on all ranks) — so the loop is collective:
// every rank walks the same (q, i) pairs and runs the forward together, and only rank q
// perturbs.
//
// Tolerance: eps = 1e-2, err <= 1e-3 + 1e-2·|numeric|. The forward is fp32. For the bare
// collectives L is linear in x, so central differences have no truncation error at all; the
// composites put one silu in between, whose truncation error eps²·|f'''|/6·|R| is ~1e-6. What
// remains is rounding: L is a sum of O(100) products of size ~1/sqrt(n), |L| ~ 1, so each
// evaluation is good to ~1e-6, which becomes ~1e-4 after dividing by 2·eps (and x0 ± eps
// rounds to ~6e-8·|x0|, 1e-5 relative to eps). That is a 10x margin. A wrong rule — identity
// for all_reduce, a missing or extra factor P, the shift's sign, chunks sent to the wrong rank
// — moves gradients by O(|R|) ~ 0.2-0.5 (the tests also require max |numeric| >= 0.05, so the
// comparison is never between two zeros).
//
// Note: with P = 2 a shift of +1 and -1 are the same permutation, so only P >= 3 can tell a
// send_recv VJP that forgot to reverse the shift; every case runs P = 2, 3 and 4.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/rng.h"
#include "ir/builder.h"
#include "runtime/comm.h"
#include "runtime/executor.h"
#include "runtime/mesh.h"
#include "sp_compiler/autodiff.h"
#include "sp_compiler/lower.h"

using namespace autosp;
using ir::Builder;
using ir::MeshGroup;
using ir::Op;
using ir::ValueId;

namespace {

constexpr double kEps = 1e-2, kAtol = 1e-3, kRtol = 1e-2;

// body(b, x, P): the per-rank computation whose gradient is checked.
using Body = std::function<ValueId(Builder&, ValueId, int64_t)>;

struct Result {
  double max_scaled_err = 0;   // worst |analytic - numeric| / (atol + rtol·|numeric|); <= 1 passes
  double max_abs_numeric = 0;  // so a test cannot pass by comparing zeros
  int checked = 0;
  int loss_mismatches = 0;     // (q, i) where some rank's L differed from rank 0's
  int failed = 0;              // elements outside the tolerance
  std::string worst;           // the element with the largest scaled error
};

// Catch2 is not thread-safe: ranks report failures by throwing (run_local rethrows).
void must(const Status& s, const char* what) {
  if (!s.ok()) throw std::runtime_error(std::string(what) + ": " + s.message());
}

Result collective_grad_check(int P, const Shape& x_shape, const Body& body) {
  ir::Graph g;
  Builder b(g);
  const ValueId x = b.param("x", x_shape, {});
  const ValueId y = body(b, x, P);
  const ValueId r = b.input("R", DType::f32, b.shape(y));
  b.output(sp::kLossOutput, b.op1(Op::all_reduce, {b.sum(b.mul(y, r))}, ir::GroupAttrs{MeshGroup::world, P}));
  const ir::Graph fwd = g;
  Status st = sp::make_autodiff_pass(P)->run(g, {});
  INFO(st.message());
  REQUIRE(st.ok());
  auto grad_prog = sp::lower(g);
  auto fwd_prog = sp::lower(fwd);
  REQUIRE(grad_prog.ok());
  REQUIRE(fwd_prog.ok());

  const Shape y_shape = b.shape(y);
  const int64_t n = x_shape.numel();
  std::vector<std::vector<float>> analytic(P);
  // numeric[r][q * n + i]: dL/dx_q[i] as rank r measured it (all ranks must agree exactly).
  std::vector<std::vector<double>> numeric(P, std::vector<double>(size_t(P * n)));
  runtime::run_local(P, [&](runtime::Communicator& world) {
    const int rank = world.rank();
    auto mesh = runtime::Mesh::create(world, runtime::MeshShape{1, P, 1});
    auto backend = runtime::make_cpu_backend();
    runtime::Executor grad_ex(grad_prog.value(), *backend, mesh.get());
    runtime::Executor fwd_ex(fwd_prog.value(), *backend, mesh.get());

    // x_r ~ N(0, 1); R_r ~ N(0, 1/numel(y)) so L stays O(1). Streams differ per rank.
    Rng rng(4321, uint64_t(rank));
    uint64_t ctr = 0;
    Tensor xt = Tensor::zeros(DType::f32, x_shape);
    for (int64_t i = 0; i < n; ++i) xt.data<float>()[i] = rng.normal(ctr++);
    Tensor rt = Tensor::zeros(DType::f32, y_shape);
    for (int64_t i = 0; i < rt.numel(); ++i)
      rt.data<float>()[i] = rng.normal(ctr++) / std::sqrt(float(rt.numel()));
    Tensor seed = Tensor::zeros(DType::f32, {});
    seed.data<float>()[0] = 1.0f / float(P);
    for (runtime::Executor* ex : {&grad_ex, &fwd_ex}) {
      must(ex->bind("x", xt), "bind x");
      must(ex->bind("R", rt), "bind R");
    }
    must(grad_ex.bind(sp::kLossSeedInput, seed), "bind d_loss");
    must(grad_ex.run(), "gradient program");
    const Tensor& gx = grad_ex.tensor(sp::kGradPrefix + std::string("x"));
    analytic[rank].assign(gx.data<float>(), gx.data<float>() + n);

    auto loss = [&] {
      must(fwd_ex.run(), "forward program");
      return double(fwd_ex.tensor(sp::kLossOutput).data<float>()[0]);
    };
    float* xs = xt.data<float>();
    for (int q = 0; q < P; ++q)
      for (int64_t i = 0; i < n; ++i) {
        const float x0 = xs[i];
        if (rank == q) xs[i] = x0 + float(kEps);
        const double up = loss();
        if (rank == q) xs[i] = x0 - float(kEps);
        const double down = loss();
        xs[i] = x0;
        numeric[rank][size_t(q * n + i)] = (up - down) / (2 * kEps);
      }
  });

  Result res;
  for (int q = 0; q < P; ++q)
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = size_t(q * n + i);
      for (int rk = 1; rk < P; ++rk) res.loss_mismatches += numeric[rk][k] != numeric[0][k];
      const double num = numeric[0][k], ana = analytic[q][size_t(i)];
      const double bound = kAtol + kRtol * std::abs(num);
      const double scaled = std::abs(ana - num) / bound;
      if (scaled > res.max_scaled_err || res.worst.empty()) {
        res.max_scaled_err = scaled;
        res.worst = "rank " + std::to_string(q) + " x[" + std::to_string(i) + "]: analytic " + std::to_string(ana) +
                    ", numeric " + std::to_string(num);
      }
      res.max_abs_numeric = std::max(res.max_abs_numeric, std::abs(num));
      res.failed += scaled > 1.0;
      ++res.checked;
    }
  return res;
}

void expect_ok(const Result& r) {
  INFO("worst element: " << r.worst << "; " << r.failed << " of " << r.checked << " outside the tolerance");
  CHECK(r.checked > 0);
  CHECK(r.loss_mismatches == 0);
  CHECK(r.max_abs_numeric >= 0.05);
  CHECK(r.max_scaled_err <= 1.0);
}

constexpr int kWorlds[] = {2, 3, 4};

ValueId all_to_all(Builder& b, ValueId x, int64_t P, int64_t split, int64_t concat) {
  return b.op1(Op::all_to_all, {x}, ir::AllToAllAttrs{MeshGroup::sp, P, split, concat});
}
ValueId all_gather(Builder& b, ValueId x, int64_t P, int64_t axis) {
  return b.op1(Op::all_gather, {x}, ir::AxisCollectiveAttrs{MeshGroup::sp, P, axis});
}
ValueId reduce_scatter(Builder& b, ValueId x, int64_t P, int64_t axis) {
  return b.op1(Op::reduce_scatter, {x}, ir::AxisCollectiveAttrs{MeshGroup::sp, P, axis});
}

}  // namespace

TEST_CASE("all_to_all gradients match finite differences of the summed loss for each split/concat pair",
          "[collective]") {
  struct Case { int64_t split, concat; };
  for (int P : kWorlds)
    for (Case c : {Case{0, 1}, Case{1, 0}, Case{2, 1}, Case{1, 1}}) {
      DYNAMIC_SECTION("P=" << P << " split " << c.split << " concat " << c.concat) {
        Shape s{3, 2, 3};
        s[int(c.split)] = 2 * P;  // divisible by the group
        expect_ok(collective_grad_check(P, s, [&](Builder& b, ValueId x, int64_t p) {
          return all_to_all(b, x, p, c.split, c.concat);
        }));
      }
    }
}

TEST_CASE("all_gather gradients are the reduce_scatter of every rank's partial cotangent", "[collective]") {
  for (int P : kWorlds)
    for (int64_t axis : {0, 1}) {
      DYNAMIC_SECTION("P=" << P << " axis " << axis) {
        expect_ok(collective_grad_check(P, Shape{3, 4}, [&](Builder& b, ValueId x, int64_t p) {
          return all_gather(b, x, p, axis);
        }));
      }
    }
}

TEST_CASE("reduce_scatter gradients match finite differences on every rank", "[collective]") {
  for (int P : kWorlds)
    for (int64_t axis : {0, 1}) {
      DYNAMIC_SECTION("P=" << P << " axis " << axis) {
        Shape s{3, 4};
        s[int(axis)] = 2 * P;
        expect_ok(collective_grad_check(P, s, [&](Builder& b, ValueId x, int64_t p) {
          return reduce_scatter(b, x, p, axis);
        }));
      }
    }
}

TEST_CASE("all_reduce gradients are the sum of every rank's cotangent", "[collective]") {
  for (int P : kWorlds)
    DYNAMIC_SECTION("P=" << P) {
      expect_ok(collective_grad_check(P, Shape{6, 4}, [&](Builder& b, ValueId x, int64_t p) {
        return b.op1(Op::all_reduce, {x}, ir::GroupAttrs{MeshGroup::sp, p});
      }));
    }
}

TEST_CASE("send_recv gradients travel the ring the other way for both shift directions", "[collective]") {
  for (int P : kWorlds)
    for (int64_t shift : {1, -1}) {
      DYNAMIC_SECTION("P=" << P << " shift " << shift) {
        expect_ok(collective_grad_check(P, Shape{6, 4}, [&](Builder& b, ValueId x, int64_t p) {
          return b.op1(Op::send_recv, {x}, ir::SendRecvAttrs{MeshGroup::sp, p, shift});
        }));
      }
    }
}

TEST_CASE("an all_to_all and its inverse, with and without a per-rank silu between, have correct gradients",
          "[collective]") {
  for (int P : kWorlds)
    for (bool with_silu : {false, true}) {
      DYNAMIC_SECTION("P=" << P << (with_silu ? " with silu" : " bare")) {
        // Ulysses-shaped: [B, T/P, H, D] -> heads split, sequence gathered -> back.
        expect_ok(collective_grad_check(P, Shape{1, 3, 2 * P, 2}, [&](Builder& b, ValueId x, int64_t p) {
          ValueId h = all_to_all(b, x, p, 2, 1);
          if (with_silu) h = b.silu(h);
          return all_to_all(b, h, p, 1, 2);
        }));
      }
    }
}

TEST_CASE("all_gather, a per-rank silu, then reduce_scatter has correct gradients", "[collective]") {
  struct Case { int64_t gather, scatter; };
  for (int P : kWorlds)
    for (Case c : {Case{0, 0}, Case{1, 0}}) {
      DYNAMIC_SECTION("P=" << P << " gather axis " << c.gather << " scatter axis " << c.scatter) {
        expect_ok(collective_grad_check(P, Shape{2 * P, 3}, [&](Builder& b, ValueId x, int64_t p) {
          return reduce_scatter(b, b.silu(all_gather(b, x, p, c.gather)), p, c.scatter);
        }));
      }
    }
}
