// CUDA attention (kernels/cuda/attention.h), through cuDNN SDPA and through our fallback
// kernels, against the CPU kernel (kernels/cpu/attention.h) on the same bf16-rounded inputs.
// The backward of both sides is fed the same O (the CPU forward's, rounded to bf16) and lse (the
// CPU forward's), so a backward difference is the backward's alone. Outputs are pre-filled with
// NaN, so an element a kernel forgets to write fails. Without a CUDA device each test prints
// why it skipped and passes.
//
// Tolerances. Both sides compute in fp32 from the same bf16 inputs; the GPU kernels (ours and
// cuDNN's, like FlashAttention) additionally round P (for P·V and Pᵀ·dO) and dS (for dS·K and
// dSᵀ·Q) to bf16, and round their outputs to bf16; bf16 keeps 8 significant bits, so each
// rounding is off by at most 2^-8 relative. An output x = Σ_t term_t is then off by at most
// 2^-8·M + 2^-8·|x| <= 2^-7·M, where M = Σ_t |term_t| (>= |x|) is computed here naively from
// the same inputs: Σ_j p_ij |v_j| for O, Σ_i p_ij |dO_i| for dV, scale·Σ_i |dS_ij| |q_i| for dK,
// scale·Σ_j |dS_ij| |k_j| for dQ, with |dS_ij| = p_ij·(|dP_ij - Δ_i| + 2^-10·(Σ|dO·v_j| + Σ|dO·o_i|)):
// where dP_ij - Δ_i cancels to 0 (a query that sees only itself) the two fp32 sums' residues
// remain, far below that second term. We allow 2^-6·M + 1e-6 per element, twice that bound
// (fp32 summation order and exp approximations add ~1e-6 relative). A per-element bound is
// loose for long rows, where one term is a small part of M, so each tensor must also agree as
// a whole: rms(error) <= 2^-7·rms(reference); roundings of random sign give about 2^-9. A row
// that sees no key has M = 0 and must be exactly 0. lse is fp32 on both sides: the scores' fp32
// dot products over D = 128 differ by at most ~6e-5 in another summation order, so we allow
// 2e-4·(1 + |lse|), and -inf must be -inf.
#include <catch2/catch.hpp>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/cuda/attention.h"
#include "tests/cuda/cuda_test_util.h"

namespace cpu = autosp::kernels::cpu;
namespace gpu = autosp::kernels::cuda;

using namespace autosp::cuda_test;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Case {
  int64_t B = 1, Tq = 0, Tk = 0, H = 1, Hkv = 1, D = 64;
  bool causal = true;
  std::vector<int32_t> q_pos, k_pos, q_seg, k_seg;  // [B, T] each, or empty for the defaults
  // One device segment tensor for queries and keys (q_seg == k_seg), as the model passes them:
  // what cuDNN's ragged path takes. seg_device: that tensor, uploaded by the test, else here.
  bool shared_segments = false;
  const int32_t* seg_device = nullptr;

  float scale() const { return 1.0f / std::sqrt(float(D)); }
  size_t q_elems() const { return size_t(B * Tq * H * D); }
  size_t k_elems() const { return size_t(B * Tk * Hkv * D); }
  size_t rows() const { return size_t(B * H * Tq); }
  int32_t qpos(int64_t b, int64_t i) const { return q_pos.empty() ? int32_t(i) : q_pos[size_t(b * Tq + i)]; }
  int32_t kpos(int64_t b, int64_t j) const { return k_pos.empty() ? int32_t(j) : k_pos[size_t(b * Tk + j)]; }
  bool visible(int64_t b, int64_t i, int64_t j) const {
    if (causal && kpos(b, j) > qpos(b, i)) return false;
    return q_seg.empty() || q_seg[size_t(b * Tq + i)] == k_seg[size_t(b * Tk + j)];
  }
  static const int32_t* ptr(const std::vector<int32_t>& v) { return v.empty() ? nullptr : v.data(); }
  cpu::AttentionArgs cpu_args() const {
    return {B, Tq, Tk, H, Hkv, D, causal, scale(), ptr(q_pos), ptr(k_pos), ptr(q_seg), ptr(k_seg)};
  }
};

// The CPU results for a case, its bf16 inputs (host and device), and the magnitudes M that
// bound the GPU's rounding (see the top of the file).
struct Reference {
  Buf q, k, v, dout;
  std::vector<float> o, lse;  // the CPU forward's
  Buf o_in;                   // o rounded to bf16: the backward's O, on both sides
  std::vector<float> dq, dk, dv;
  std::vector<float> o_mag, dq_mag, dk_mag, dv_mag;

  Reference(const Case& c, uint32_t seed)
      : q(random(c.q_elems(), seed)),
        k(random(c.k_elems(), seed + 1)),
        v(random(c.k_elems(), seed + 2)),
        dout(random(c.q_elems(), seed + 3)),
        o(c.q_elems()),
        lse(c.rows()),
        o_in(forward(c)),
        dq(c.q_elems()),
        dk(c.k_elems()),
        dv(c.k_elems()) {
    const cpu::AttentionArgs a = c.cpu_args();
    cpu::attention_backward(a, q.host.data(), k.host.data(), v.host.data(), o_in.host.data(), lse.data(),
                            dout.host.data(), dq.data(), dk.data(), dv.data());
    magnitudes(c);
  }

 private:
  // Initialises o_in: q, k, v, o and lse are constructed by then (declaration order).
  std::vector<float> forward(const Case& c) {
    cpu::attention_forward(c.cpu_args(), q.host.data(), k.host.data(), v.host.data(), o.data(), lse.data());
    return o;
  }

  void magnitudes(const Case& c) {
    o_mag.assign(c.q_elems(), 0.0f);
    dq_mag.assign(c.q_elems(), 0.0f);
    dk_mag.assign(c.k_elems(), 0.0f);
    dv_mag.assign(c.k_elems(), 0.0f);
    const int64_t D = c.D, group = c.H / c.Hkv;
    const float scale = c.scale();
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t h = 0; h < c.H; ++h)
        for (int64_t i = 0; i < c.Tq; ++i) {
          const float l = lse[size_t((b * c.H + h) * c.Tq + i)];
          if (l == kNegInf) continue;
          const size_t qi = size_t(((b * c.Tq + i) * c.H + h) * D);
          float delta = 0.0f, adel = 0.0f;
          for (int64_t d = 0; d < D; ++d) {
            delta += dout.host[qi + d] * o_in.host[qi + d];
            adel += std::abs(dout.host[qi + d] * o_in.host[qi + d]);
          }
          for (int64_t j = 0; j < c.Tk; ++j) {
            if (!c.visible(b, i, j)) continue;
            const size_t kj = size_t(((b * c.Tk + j) * c.Hkv + h / group) * D);
            float s = 0.0f, dp = 0.0f, adp = 0.0f;
            for (int64_t d = 0; d < D; ++d) {
              s += q.host[qi + d] * k.host[kj + d];
              dp += dout.host[qi + d] * v.host[kj + d];
              adp += std::abs(dout.host[qi + d] * v.host[kj + d]);
            }
            // dp - delta cancels exactly where a query sees only itself (a document's first
            // token): both sides then hold fp32 summation residues of dp and delta, bounded by
            // their absolute sums times far less than 2^-10.
            const float p = std::exp(s * scale - l),
                        ds = scale * p * (std::abs(dp - delta) + 0x1p-10f * (adp + adel));
            for (int64_t d = 0; d < D; ++d) {
              o_mag[qi + d] += p * std::abs(v.host[kj + d]);
              dv_mag[kj + d] += p * std::abs(dout.host[qi + d]);
              dk_mag[kj + d] += ds * std::abs(q.host[qi + d]);
              dq_mag[qi + d] += ds * std::abs(k.host[kj + d]);
            }
          }
        }
  }
};

void require_close(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                   const std::vector<float>& mag) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  double err2 = 0.0, ref2 = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i] << ", magnitude " << mag[i]);
    REQUIRE(std::abs(got[i] - want[i]) <= 0x1p-6f * mag[i] + 1e-6f);
    err2 += double(got[i] - want[i]) * (got[i] - want[i]);
    ref2 += double(want[i]) * want[i];
  }
  REQUIRE(std::sqrt(err2) <= 0x1p-7 * std::sqrt(ref2));
}

void require_close_lse(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("lse row " << i << ": got " << got[i] << ", want " << want[i]);
    if (want[i] == kNegInf) {
      REQUIRE(got[i] == kNegInf);
    } else {
      REQUIRE(std::abs(got[i] - want[i]) <= 2e-4f * (1.0f + std::abs(want[i])));
    }
  }
}

// Which implementation a run goes through: cuDNN (required to accept the case), the fallback
// kernels, or attention_forward/backward's own choice; or cuDNN as a ring's visiting block of
// packed documents (the case's segments as VisitingDocuments over whole rows; not causal).
enum class Path { kCudnn, kFallback, kAuto, kVisiting };

struct DeviceInts {
  int32_t* ptr = nullptr;
  explicit DeviceInts(const std::vector<int32_t>& v) : ptr(v.empty() ? nullptr : device_copy(v)) {}
  ~DeviceInts() { cudaFree(ptr); }
};

template <class T>
void fill_nan(T* dev, size_t n) {
  REQUIRE(cudaMemset(dev, 0xff, n * sizeof(T)) == cudaSuccess);  // all-ones: NaN in bf16 and fp32
}

// The GPU forward and backward of the case along `path`, compared with the CPU.
void check_against_cpu(const Case& c, Path path, uint32_t seed, gpu::AttentionContext& ctx) {
  const Reference ref(c, seed);
  const DeviceInts qp(c.q_pos), kp(c.k_pos), qs(c.seg_device ? std::vector<int32_t>{} : c.q_seg),
      ks(c.shared_segments ? std::vector<int32_t>{} : c.k_seg);
  const int32_t* q_seg = c.seg_device ? c.seg_device : qs.ptr;
  const int32_t* k_seg = c.shared_segments ? q_seg : ks.ptr;
  const gpu::AttentionArgs a{c.B, c.Tq, c.Tk, c.H, c.Hkv, c.D, c.causal, c.scale(), qp.ptr, kp.ptr, q_seg, k_seg};
  gpu::AttentionArgs window = a;  // Path::kVisiting: the ids go beside
  window.q_seg = window.k_seg = nullptr;
  const gpu::VisitingDocuments visiting{q_seg, k_seg, 0, 0};

  Buf o(c.q_elems());
  float* lse = device_copy(std::vector<float>(c.rows()));
  fill_nan(o.dev, c.q_elems());
  fill_nan(lse, c.rows());
  switch (path) {
    case Path::kCudnn:
      REQUIRE(gpu::attention_forward_cudnn(ctx, a, ref.q.dev, ref.k.dev, ref.v.dev, o.dev, lse, nullptr));
      break;
    case Path::kFallback:
      gpu::attention_forward_fallback(ctx, a, ref.q.dev, ref.k.dev, ref.v.dev, o.dev, lse, nullptr);
      break;
    case Path::kAuto:
      gpu::attention_forward(ctx, a, ref.q.dev, ref.k.dev, ref.v.dev, o.dev, lse, nullptr);
      break;
    case Path::kVisiting:
      REQUIRE(gpu::attention_forward_cudnn_visiting(ctx, window, visiting, ref.q.dev, ref.k.dev, ref.v.dev, o.dev, lse,
                                                    nullptr));
      break;
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  require_close("o", o.download(), ref.o, ref.o_mag);
  require_close_lse(host_copy(lse, c.rows()), ref.lse);

  Buf dq(c.q_elems()), dk(c.k_elems()), dv(c.k_elems());
  fill_nan(dq.dev, c.q_elems());
  fill_nan(dk.dev, c.k_elems());
  fill_nan(dv.dev, c.k_elems());
  float* lse_in = device_copy(ref.lse);
  const bf16 *q = ref.q.dev, *k = ref.k.dev, *v = ref.v.dev, *o_in = ref.o_in.dev, *dout = ref.dout.dev;
  switch (path) {
    case Path::kCudnn:
      REQUIRE(gpu::attention_backward_cudnn(ctx, a, q, k, v, o_in, lse_in, dout, dq.dev, dk.dev, dv.dev, nullptr));
      break;
    case Path::kFallback:
      gpu::attention_backward_fallback(ctx, a, q, k, v, o_in, lse_in, dout, dq.dev, dk.dev, dv.dev, nullptr);
      break;
    case Path::kAuto:
      gpu::attention_backward(ctx, a, q, k, v, o_in, lse_in, dout, dq.dev, dk.dev, dv.dev, nullptr);
      break;
    case Path::kVisiting:
      REQUIRE(gpu::attention_backward_cudnn_visiting(ctx, window, visiting, q, k, v, o_in, lse_in, dout, dq.dev, dk.dev,
                                                     dv.dev, nullptr));
      break;
  }
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  require_close("dq", dq.download(), ref.dq, ref.dq_mag);
  require_close("dk", dk.download(), ref.dk, ref.dk_mag);
  require_close("dv", dv.download(), ref.dv, ref.dv_mag);
  cudaFree(lse);
  cudaFree(lse_in);
}

void check_against_cpu(const Case& c, Path path, uint32_t seed) {
  gpu::AttentionContext ctx;
  check_against_cpu(c, path, seed, ctx);
}

// Both implementations on a case cuDNN can take; the cuDNN section skips, saying why, in a
// build without the cuDNN frontend.
void check_both_paths(const Case& c, uint32_t seed) {
  SECTION("fallback kernels") { check_against_cpu(c, Path::kFallback, seed); }
  SECTION("cuDNN SDPA") {
    if (!gpu::attention_cudnn_built()) {
      WARN("skipped: built without the cuDNN frontend (see kernels/cuda/CMakeLists.txt)");
      return;
    }
    check_against_cpu(c, Path::kCudnn, seed);
  }
}

}  // namespace

TEST_CASE("CUDA causal attention matches the CPU kernel, D = 64 and 128", "[cuda][attention]") {
  REQUIRE_GPU();
  for (int64_t D : {64, 128}) {
    DYNAMIC_SECTION("D = " << D) {
      Case c;
      c.B = 2, c.Tq = c.Tk = 193, c.H = c.Hkv = 3, c.D = D;  // 193: partial last tiles
      check_both_paths(c, 100);
    }
  }
}

TEST_CASE("CUDA GQA attention (8 query heads on 2 kv heads) matches the CPU kernel", "[cuda][attention]") {
  REQUIRE_GPU();
  Case c;
  c.B = 1, c.Tq = c.Tk = 256, c.H = 8, c.Hkv = 2, c.D = 128;
  check_both_paths(c, 200);
}

TEST_CASE("CUDA non-causal attention with Tq != Tk matches the CPU kernel", "[cuda][attention]") {
  REQUIRE_GPU();
  Case c;
  c.B = 2, c.Tq = 100, c.Tk = 300, c.H = 4, c.Hkv = 2, c.D = 64, c.causal = false;
  check_both_paths(c, 300);
}

TEST_CASE("CUDA causal attention with Tq != Tk aligns positions top-left like the CPU kernel", "[cuda][attention]") {
  REQUIRE_GPU();
  for (int64_t Tq : {70, 300}) {
    DYNAMIC_SECTION("Tq = " << Tq << ", Tk = 150") {
      Case c;
      c.B = 1, c.Tq = Tq, c.Tk = 150, c.H = 2, c.Hkv = 1, c.D = 128;
      check_both_paths(c, 400);
    }
  }
}

TEST_CASE("CUDA attention over packed documents (segments and positions) matches the CPU kernel",
          "[cuda][attention]") {
  REQUIRE_GPU();
  // Batch row 0: documents of 37, 80 and 43 tokens, positions restarting in each. Row 1 starts
  // inside a document that began in an earlier row (its positions start at 500), then a
  // 90-token document, then padding (segment -1) whose positions restart too.
  Case c;
  c.B = 2, c.Tq = c.Tk = 160, c.H = 4, c.Hkv = 2;
  const std::vector<std::vector<int>> docs = {{37, 80, 43}, {50, 90, 20}};
  for (int64_t b = 0; b < c.B; ++b) {
    int32_t seg = 0;
    for (int len : docs[size_t(b)]) {
      const bool continued = b == 1 && seg == 0, padding = b == 1 && seg == 2;
      for (int t = 0; t < len; ++t) {
        c.q_pos.push_back(continued ? 500 + t : t);
        c.q_seg.push_back(padding ? -1 : seg);
      }
      ++seg;
    }
  }
  c.k_pos = c.q_pos;
  c.k_seg = c.q_seg;
  for (int64_t D : {64, 128}) {
    DYNAMIC_SECTION("D = " << D) {
      c.D = D;
      // Through the dispatcher: segments are not cuDNN's, so this is the fallback too.
      check_against_cpu(c, Path::kAuto, 500);
    }
  }
}

// Packed documents as the model passes them: one segment tensor, default (row) positions.
// `docs[b]`: row b's document lengths; a negative length is that many padding tokens (id -1).
Case documents_case(const std::vector<std::vector<int>>& docs, int64_t T, int64_t H, int64_t Hkv, int64_t D,
                    bool causal) {
  Case c;
  c.B = int64_t(docs.size()), c.Tq = c.Tk = T, c.H = H, c.Hkv = Hkv, c.D = D, c.causal = causal;
  c.shared_segments = true;
  for (const std::vector<int>& row : docs) {
    int32_t id = 0;
    for (int len : row) {
      for (int t = 0; t < std::abs(len); ++t) c.q_seg.push_back(len < 0 ? -1 : id);
      ++id;
    }
  }
  REQUIRE(c.q_seg.size() == size_t(c.B * T));
  c.k_seg = c.q_seg;
  return c;
}

bool cudnn_takes_documents() {
  cudaDeviceProp prop;
  REQUIRE(cudaGetDeviceProperties(&prop, 0) == cudaSuccess);
  if (prop.major == 8 || prop.major == 12) {  // the frontend declines ragged statistics' backward there
    WARN("cuDNN path skipped: no ragged-statistics backward on compute capability " << prop.major << ".x");
    return false;
  }
  if (!gpu::attention_cudnn_built()) {
    WARN("cuDNN path skipped: built without the cuDNN frontend (see kernels/cuda/CMakeLists.txt)");
    return false;
  }
  if (!gpu::attention_cudnn_documents()) {
    WARN("cuDNN path skipped: this cuDNN runtime is older than 9.6 (no ragged statistics)");
    return false;
  }
  return true;
}

TEST_CASE("cuDNN runs packed documents as ragged sequences like the CPU kernel", "[cuda][attention]") {
  REQUIRE_GPU();
  // Row 0: documents of 37, 80 and 43 tokens; row 1: 50, 90, then 20 padding tokens.
  const std::vector<std::vector<int>> docs = {{37, 80, 43}, {50, 90, -20}};
  for (int64_t D : {64, 128})
    for (bool causal : {true, false}) {
      DYNAMIC_SECTION("D = " << D << (causal ? " causal" : " bidirectional")) {
        const Case c = documents_case(docs, 160, 4, 2, D, causal);
        check_against_cpu(c, Path::kAuto, 900);
        if (cudnn_takes_documents()) check_against_cpu(c, Path::kCudnn, 900);
      }
    }
}

TEST_CASE("cuDNN's ragged batch grows past 16 documents and takes one-token ones", "[cuda][attention]") {
  REQUIRE_GPU();
  // 29 documents (the graph's batch rounds up to 32), lengths 1 to 97, in one 1000-token row.
  std::vector<int> row;
  int left = 1000;
  for (int i = 0; left > 0; ++i) {
    const int len = std::min(left, i % 5 == 0 ? 1 : 1 + (i * 37) % 97);
    row.push_back(len);
    left -= len;
  }
  REQUIRE(row.size() > 16);
  const Case c = documents_case({row}, 1000, 2, 1, 64, true);
  if (cudnn_takes_documents()) check_against_cpu(c, Path::kCudnn, 910);
}

TEST_CASE("consecutive rows may share a document id", "[cuda][attention]") {
  REQUIRE_GPU();
  // Both rows start at id 0 (documents_case counts per row): row 1's first document is its own,
  // not row 0's, as the CPU's per-row mask says.
  const Case c = documents_case({{160}, {100, 60}}, 160, 2, 2, 64, true);
  check_against_cpu(c, Path::kAuto, 915);
  if (cudnn_takes_documents()) check_against_cpu(c, Path::kCudnn, 915);
}

TEST_CASE("documents whose ids repeat in a row take the fallback kernels", "[cuda][attention]") {
  REQUIRE_GPU();
  // Ids 0, 1, 0: the third run shares id 0 with the first, so its tokens see the first run's
  // too; cuDNN's ragged sequences cannot say that, so the cuDNN path declines and the
  // dispatcher's fallback matches the CPU.
  Case c = documents_case({{50, 40, 30}}, 120, 2, 2, 64, true);
  std::fill(c.q_seg.begin() + 90, c.q_seg.end(), 0);
  c.k_seg = c.q_seg;
  check_against_cpu(c, Path::kAuto, 920);
  if (!gpu::attention_cudnn_built()) return;
  const Reference ref(c, 920);
  const DeviceInts seg(c.q_seg);
  const gpu::AttentionArgs a{c.B, c.Tq, c.Tk, c.H, c.Hkv, c.D, c.causal, c.scale(), nullptr, nullptr, seg.ptr, seg.ptr};
  Buf o(c.q_elems());
  float* lse = device_copy(std::vector<float>(c.rows()));
  gpu::AttentionContext ctx;
  REQUIRE_FALSE(gpu::attention_forward_cudnn(ctx, a, ref.q.dev, ref.k.dev, ref.v.dev, o.dev, lse, nullptr));
  cudaFree(lse);
}

TEST_CASE("cuDNN runs a ring's visiting block of packed documents like the CPU kernel", "[cuda][attention]") {
  REQUIRE_GPU();
  if (!cudnn_takes_documents()) return;
  // Queries: row 0 documents 0, 1, 2 of 37, 80 and 43 tokens; row 1 documents 0, 1 of 50 and 90,
  // then 20 padding tokens. The block's keys (later tokens of the same rows): row 0 documents
  // 1, 2, 3 of 30, 50 and 40; row 1 document 1 of 70, then 50 padding. So row 0's document 0 and
  // row 1's document 0 see no key (o = 0, lse = -inf, zero gradients), document 3's keys no query,
  // and padding sees padding, as the CPU's id mask says.
  for (int64_t D : {64, 128}) {
    DYNAMIC_SECTION("D = " << D) {
      Case c = documents_case({{37, 80, 43}, {50, 90, -20}}, 160, 4, 2, D, /*causal=*/false);
      c.shared_segments = false;
      c.Tk = 120;
      c.k_seg.clear();
      for (auto [id, n] : std::vector<std::pair<int32_t, int>>{{1, 30}, {2, 50}, {3, 40}, {1, 70}, {-1, 50}})
        c.k_seg.insert(c.k_seg.end(), size_t(n), id);
      check_against_cpu(c, Path::kVisiting, 925);
    }
  }
}

TEST_CASE("a context's document tables follow the segments from step to step", "[cuda][attention]") {
  REQUIRE_GPU();
  if (!cudnn_takes_documents()) return;
  // One segment buffer, rewritten between steps (as the trainer's input is): each step's
  // begin_step() makes the cuDNN path scan it again.
  const Case first = documents_case({{100, 60}}, 160, 2, 2, 64, true);
  const Case second = documents_case({{30, 20, 110}}, 160, 2, 2, 64, true);
  int32_t* seg = device_copy(first.q_seg);
  gpu::AttentionContext ctx;
  for (const Case* step : {&first, &second, &first}) {
    REQUIRE(cudaMemcpy(seg, step->q_seg.data(), step->q_seg.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
    ctx.begin_step();
    Case c = *step;
    c.seg_device = seg;
    check_against_cpu(c, Path::kCudnn, 930, ctx);
  }
  cudaFree(seg);
}

TEST_CASE("CUDA attention of a ring block (explicit positions, Tq != Tk, rows that see no key) matches the CPU",
          "[cuda][attention]") {
  REQUIRE_GPU();
  // Zigzag-style block: queries at positions 64..159, keys at 100..227. Queries before position
  // 100 see no key (o = 0, lse = -inf, zero gradient); keys after 159 are seen by no query
  // (dk = dv = 0).
  Case c;
  c.B = 1, c.Tq = 96, c.Tk = 128, c.H = 4, c.Hkv = 4;
  for (int32_t i = 0; i < 96; ++i) c.q_pos.push_back(64 + i);
  for (int32_t j = 0; j < 128; ++j) c.k_pos.push_back(100 + j);
  for (int64_t D : {64, 128}) {
    DYNAMIC_SECTION("D = " << D) {
      c.D = D;
      check_against_cpu(c, Path::kAuto, 600);
    }
  }
}

TEST_CASE("CUDA fallback attention handles head dims other than 64 and 128", "[cuda][attention]") {
  REQUIRE_GPU();
  // 40: padded to 64 with element-wise loads (rows are not 16-byte multiples); 96: padded to
  // 128; 256: the largest tiles' shared-memory layout.
  for (int64_t D : {40, 96, 256}) {
    DYNAMIC_SECTION("D = " << D) {
      Case c;
      c.B = 1, c.Tq = 80, c.Tk = 80, c.H = 2, c.Hkv = 1, c.D = D;
      check_against_cpu(c, Path::kFallback, 700);
    }
  }
}

TEST_CASE("cuDNN SDPA workspaces stay linear in the sequence length", "[cuda][attention]") {
  REQUIRE_GPU();
  if (!gpu::attention_cudnn_built()) {
    WARN("skipped: built without the cuDNN frontend (see kernels/cuda/CMakeLists.txt)");
    return;
  }
  // 32k tokens, 8 heads (configs/llama-270m.json at bench_gpu.sh's longer length): cuDNN's
  // deterministic Hopper backward keeps dP in its workspace, 8·32768²·2 bytes = 16 GiB. The
  // default algorithm needs an fp32 dQ accumulator (T·H·D·4 = 128 MiB) and row statistics.
  // Only graphs are built here: nothing of that size is allocated.
  const int64_t T = 32768, H = 8, D = 128;
  const gpu::AttentionArgs a{1, T, T, H, H, D, true, 1.0f / std::sqrt(float(D))};
  gpu::AttentionContext ctx;
  for (bool backward : {false, true}) {
    DYNAMIC_SECTION((backward ? "backward" : "forward")) {
      const int64_t bytes = gpu::attention_cudnn_workspace(ctx, a, backward);
      if (bytes < 0) {
        WARN("skipped: cuDNN does not take T = 32768, H = 8, D = 128 on this GPU");
        return;
      }
      INFO("workspace " << bytes << " bytes");
      REQUIRE(bytes <= (int64_t(512) << 20));
    }
  }
}

TEST_CASE("CUDA fallback attention backward is deterministic", "[cuda][attention]") {
  REQUIRE_GPU();
  const int64_t B = 1, T = 200, H = 4, Hkv = 2, D = 64;
  Buf q(random(size_t(B * T * H * D), 800)), k(random(size_t(B * T * Hkv * D), 801)),
      v(random(size_t(B * T * Hkv * D), 802)), dout(random(size_t(B * T * H * D), 803)), o(size_t(B * T * H * D));
  const gpu::AttentionArgs a{B, T, T, H, Hkv, D, true, 0.125f};
  gpu::AttentionContext ctx;
  float* lse = device_copy(std::vector<float>(size_t(B * H * T)));
  gpu::attention_forward_fallback(ctx, a, q.dev, k.dev, v.dev, o.dev, lse, nullptr);
  std::vector<std::vector<float>> runs;
  for (int run = 0; run < 2; ++run) {
    Buf dq(q.host.size()), dk(k.host.size()), dv(v.host.size());
    gpu::attention_backward_fallback(ctx, a, q.dev, k.dev, v.dev, o.dev, lse, dout.dev, dq.dev, dk.dev, dv.dev,
                                     nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    std::vector<float> all = dq.download();
    for (const Buf* g : {&dk, &dv}) {
      const std::vector<float> part = g->download();
      all.insert(all.end(), part.begin(), part.end());
    }
    runs.push_back(std::move(all));
  }
  REQUIRE(runs[0] == runs[1]);
  cudaFree(lse);
}

TEST_CASE("AUTOSP_ATTENTION=fallback makes a context skip cuDNN", "[cuda][attention]") {
  REQUIRE_GPU();
  setenv("AUTOSP_ATTENTION", "fallback", 1);
  const gpu::AttentionContext forced;
  unsetenv("AUTOSP_ATTENTION");
  const gpu::AttentionContext normal;
  REQUIRE(forced.force_fallback);
  REQUIRE_FALSE(normal.force_fallback);
}
