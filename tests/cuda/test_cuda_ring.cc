// Ring attention on the GPU: the merge and accumulation kernels (kernels/cuda/ring.h) against
// a host fp32 reference, and the whole ring (runtime/cuda/ring_attention_cuda.h: P ranks as
// threads on one GPU, their device buffers moved by the blocking local communicator or by a
// stream-ordered stand-in for NCCL, tests/cuda/stream_comm.h; the zigzag layout declared, so
// cuDNN runs each block's piece, or not) against the CPU ring (runtime/ring_attention.h) on
// the same bf16-rounded inputs. Without a CUDA device each test prints why it skipped and
// passes.
//
// Tolerances. The merge reads a bf16 block output (exact in fp32) and computes two exps and a
// log1p in fp32, like the host reference: 1e-5 relative + 1e-6 absolute covers the device's
// exp/log1p ulps. The ring differs from the CPU ring as one block attention does (its outputs
// rounded to bf16 per block, P and dS rounded inside; tests/cuda/test_cuda_attention.cc bounds
// that per element), plus one bf16 rounding per block merged or accumulated: we hold each
// tensor as a whole to rms(error) <= 2^-6·rms(reference), and each element to 2^-4 of the
// tensor's largest magnitude. A wrong block, a lost merge or a gradient that went round the
// ring the wrong way is off by O(1).
#include <catch2/catch.hpp>
#include <cuda_runtime.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/ring.h"
#include "runtime/comm.h"
#include "runtime/cuda/cuda_mem_ops.h"
#include "runtime/cuda/ring_attention_cuda.h"
#include "runtime/ring_attention.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/cuda/stream_comm.h"

using namespace autosp;
using namespace autosp::cuda_test;
namespace k = autosp::kernels::cuda;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void require_similar(const char* what, const std::vector<float>& got, const std::vector<float>& want) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  double err2 = 0.0, ref2 = 0.0;
  float top = 0.0f;
  for (float w : want) top = std::max(top, std::abs(w));
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i] << ", largest " << top);
    REQUIRE(std::abs(got[i] - want[i]) <= 0x1p-4f * top + 1e-6f);
    err2 += double(got[i] - want[i]) * (got[i] - want[i]);
    ref2 += double(want[i]) * want[i];
  }
  REQUIRE(std::sqrt(err2) <= 0x1p-6 * std::sqrt(ref2) + 1e-9);
}

// The document of global token i of T_total: a long one across chunks (and ranks, P > 1), a
// second one up to the middle, then documents of 7 tokens, and 3 padding tokens (-1) at the end.
// Every visiting block then holds documents the queries share and documents they do not.
int32_t document(int32_t i, int64_t T_total) {
  if (i >= T_total - 3) return -1;
  if (i < T_total / 3) return 0;
  if (i < T_total / 2) return 1;
  return 2 + int32_t((i - T_total / 2) / 7);
}

}  // namespace

TEST_CASE("the ring merge kernel equals the fp32 online-softmax merge, -inf rows on either side included",
          "[cuda][ring]") {
  REQUIRE_GPU();
  const int64_t B = 2, T = 5, H = 3, D = 40;  // D not a multiple of the warp
  const size_t n = size_t(B * T * H * D), rows = size_t(B * H * T);
  const std::vector<float> o = random(n, 1), lse_all = random(rows, 2, 3.0f), lse_blk_all = random(rows, 3, 3.0f),
                           o_blk_all = random(n, 4);

  for (const bool first : {false, true})
    for (const auto& [lo, hi] : {std::pair<int64_t, int64_t>{0, T}, {1, 4}}) {
      // Rows [lo, hi) of each batch are the block's piece; the block's other rows of o hold
      // NaN, which the merge must not read.
      DYNAMIC_SECTION((first ? "first block" : "merge") << ", rows " << lo << ".." << hi) {
      std::vector<float> lse = lse_all, lse_blk = lse_blk_all, o_blk_host = o_blk_all;
      // Row patterns: running -inf, block -inf, both.
      for (size_t r = 0; r < rows; r += 3) lse[r] = kNegInf;
      for (size_t r = 1; r < rows; r += 4) lse_blk[r] = kNegInf;
      lse[2] = lse_blk[2] = kNegInf;
      const auto inside = [&](int64_t i) { return i >= lo && i < hi; };
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < T; ++i)
          for (int64_t h = 0; h < H; ++h)
            if (!inside(i)) {
              lse_blk[size_t((b * H + h) * T + i)] = NAN;
              std::fill_n(&o_blk_host[size_t(((b * T + i) * H + h) * D)], D, NAN);
            }
      Buf o_blk(o_blk_host);
      std::vector<float> want_o = o, want_lse = lse;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < T; ++i)
          for (int64_t h = 0; h < H; ++h) {
            const size_t l_at = size_t((b * H + h) * T + i), row = size_t(((b * T + i) * H + h) * D);
            const float lb = inside(i) ? lse_blk[l_at] : kNegInf, l = first ? kNegInf : lse[l_at];
            float* orow = &want_o[row];
            const float* brow = &o_blk.host[row];
            if (lb == kNegInf) {
              if (first) {
                std::fill_n(orow, D, 0.0f);
                want_lse[l_at] = kNegInf;
              }
              continue;
            }
            if (l == kNegInf) {
              std::copy_n(brow, D, orow);
              want_lse[l_at] = lb;
              continue;
            }
            const float l_new = std::max(l, lb) + std::log1p(std::exp(-std::abs(l - lb)));
            const float w = std::exp(l - l_new), wb = std::exp(lb - l_new);
            for (int64_t d = 0; d < D; ++d) orow[d] = w * orow[d] + wb * brow[d];
            want_lse[l_at] = l_new;
          }
      float* d_o = device_copy(o);
      float* d_lse = device_copy(lse);
      // The block's lse holds only the piece's rows, packed [B, H, hi - lo] (kernels/cuda/ring.h).
      std::vector<float> lse_packed;
      for (int64_t bh = 0; bh < B * H; ++bh)
        for (int64_t i = lo; i < hi; ++i) lse_packed.push_back(lse_blk[size_t(bh * T + i)]);
      float* d_lse_blk = device_copy(lse_packed);
      k::ring_merge(d_o, d_lse, o_blk.dev, d_lse_blk, B, T, H, D, lo, hi, first, nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<float> got_o = host_copy(d_o, n), got_lse = host_copy(d_lse, rows);
      cudaFree(d_o);
      cudaFree(d_lse);
      cudaFree(d_lse_blk);
      close(got_o, want_o, 1e-5f, 1e-6f);
      for (size_t r = 0; r < rows; ++r) {
        INFO("lse row " << r);
        if (want_lse[r] == kNegInf)
          REQUIRE(got_lse[r] == kNegInf);
        else
          REQUIRE(std::abs(got_lse[r] - want_lse[r]) <= 1e-5f * (1.0f + std::abs(want_lse[r])));
      }
      }
    }
}

// Rows [lo, hi) of each batch accumulate; a first call zeroes the other rows, a later one
// leaves them. Sums of two bf16 values are exact in fp32.
TEST_CASE("ring accumulation widens bf16 parts into fp32 sums over a row range", "[cuda][ring]") {
  REQUIRE_GPU();
  const int64_t B = 2, T = 10, W = 50;
  const size_t n = size_t(B * T * W);
  Buf a(random(n, 5)), b(random(n, 6));
  Scratch acc(n * sizeof(float));
  k::ring_accumulate(acc.as<float>(), a.dev, B, T, W, 2, 9, /*first=*/true, nullptr);
  k::ring_accumulate(acc.as<float>(), b.dev, B, T, W, 0, 5, /*first=*/false, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> got = host_copy(acc.as<float>(), n);
  std::vector<float> want(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t t = int64_t(i) / W % T;
    want[i] = (t >= 2 && t < 9 ? a.host[i] : 0.0f) + (t < 5 ? b.host[i] : 0.0f);
  }
  exact<float>(got, want);
}

TEST_CASE("ring attention on one GPU (P ranks, blocking or queued transfers) equals the CPU ring: forward and backward",
          "[cuda][ring]") {
  REQUIRE_GPU();
  const int64_t B = 2, H = 4, Hkv = 2, D = 64;
  for (const int P : {1, 2, 4})
    for (const bool docs : {false, true})
      for (const bool zigzag : {false, true})
        for (const bool ordered : {false, true})
          for (const bool causal : {true, false}) {
      // zigzag: the layout is declared, so cuDNN runs each block's piece (with documents in
      // its ragged layout: the rank's own block as its documents, a visiting block's piece as
      // each local document with the keys of its id); else the fallback kernels attend every
      // whole block by position. Bidirectional: with documents and zigzag only (every piece is
      // a whole block, and cuDNN's visiting path then also covers the early queries). ordered: a
      // stream-ordered communicator (tests/cuda/stream_comm.h, NCCL's semantics), so the
      // block kernels overlap the transfers and only the ring's events order them; else the
      // blocking local communicator.
      if (ordered && P == 1) continue;
      if (!causal && !(docs && zigzag)) continue;
      DYNAMIC_SECTION("P=" << P << (docs ? " with documents" : "") << (zigzag ? ", zigzag declared" : "")
                           << (ordered ? ", stream-ordered transfers" : "") << (causal ? "" : ", bidirectional")) {
        const int64_t T_total = 64 * P, T = T_total / P;
        const size_t qn = size_t(B * T * H * D), kvn = size_t(B * T * Hkv * D), rows = size_t(B * H * T);
        // Per rank: bf16-exact inputs, zigzag indices, and segment ids (document()).
        struct Rank {
          std::vector<float> q, k, v, dout;
          std::vector<int32_t> idx, seg;
          std::vector<float> o, lse, dq, dk, dv;           // the CPU ring's
          std::vector<float> g_o, g_lse, g_dq, g_dk, g_dv;  // the GPU ring's
          int64_t ring_bytes = 0, planned_ring_bytes = 0;
          bool scanned_as_expected = false;
        };
        std::vector<Rank> ranks(static_cast<size_t>(P));
        for (int r = 0; r < P; ++r) {
          Rank& x = ranks[size_t(r)];
          auto rounded = [](std::vector<float> v) {
            for (float& f : v) f = round_to<bf16>(f);
            return v;
          };
          x.q = rounded(random(qn, 10 + r));
          x.k = rounded(random(kvn, 20 + r));
          x.v = rounded(random(kvn, 30 + r));
          x.dout = rounded(random(qn, 40 + r));
          const std::vector<int32_t> one = runtime::zigzag_indices(T_total, P, r);
          for (int64_t b = 0; b < B; ++b) {
            x.idx.insert(x.idx.end(), one.begin(), one.end());
            for (int32_t i : one) x.seg.push_back(document(i, T_total));
          }
          x.o.resize(qn), x.lse.resize(rows), x.dq.resize(qn), x.dk.resize(kvn), x.dv.resize(kvn);
        }
        auto args = [&](const Rank& x) {
          runtime::RingAttentionArgs a{B, T, H, Hkv, D, causal, 0.125f, x.idx.data(),
                                       docs ? x.seg.data() : nullptr};
          a.zigzag = zigzag;
          return a;
        };
        runtime::run_local(P, [&](runtime::Communicator& c) {
          Rank& x = ranks[size_t(c.rank())];
          const runtime::RingAttentionArgs a = args(x);
          runtime::ring_attention_forward(c, a, x.q.data(), x.k.data(), x.v.data(), x.o.data(), x.lse.data());
          // The backward gets the CPU's o rounded to bf16, as the GPU's will.
          for (float& f : x.o) f = round_to<bf16>(f);
          runtime::ring_attention_backward(c, a, x.q.data(), x.k.data(), x.v.data(), x.o.data(), x.lse.data(),
                                           x.dout.data(), x.dq.data(), x.dk.data(), x.dv.data());
        });

        cudaStream_t mem_stream;
        CUDA_CHECK(cudaStreamCreateWithFlags(&mem_stream, cudaStreamNonBlocking));
        const auto hub = std::make_shared<cuda_test::StreamCommHub>(P);
        {
          runtime::CudaMemOps mem(mem_stream, /*synchronous=*/true);
          runtime::run_local(
              P,
              [&](runtime::Communicator& local) {
                Rank& x = ranks[size_t(local.rank())];
                cudaStream_t s;
                CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
                {
                  cuda_test::StreamComm stream_comm(hub, local.rank(), s);
                  runtime::Communicator& c = ordered ? static_cast<runtime::Communicator&>(stream_comm) : local;
                  int64_t allocated = 0;  // the ring's device memory, as the backend counts it
                  runtime::CudaRingAttention ring(s, [&](int64_t delta) { allocated += delta; });
                  Buf q(x.q), kk(x.k), v(x.v), dout(x.dout), o(qn), dq(qn), dk(kvn), dv(kvn);
                  int32_t* idx = device_copy(x.idx);
                  int32_t* seg = device_copy(x.seg);
                  Scratch lse(rows * sizeof(float));
                  runtime::RingAttentionArgs a = args(x);
                  a.idx = idx;
                  a.seg = docs ? seg : nullptr;
                  ring.forward(c, a, q.dev, kk.dev, v.dev, o.dev, lse.as<float>());
                  // Backward from the CPU's o and lse, so that its difference is its own.
                  Buf o_cpu(x.o);
                  float* lse_cpu = device_copy(x.lse);
                  ring.backward(c, a, q.dev, kk.dev, v.dev, o_cpu.dev, lse_cpu, dout.dev, dq.dev, dk.dev, dv.dev);
                  CUDA_CHECK(cudaStreamSynchronize(s));
                  // --plan counts the ring's own buffers exactly (its attention kernels' scratch
                  // and, with documents, cuDNN's document starts are the attention workspace,
                  // counted apart).
                  const int64_t starts = k::cudnn_attention_held_bytes(ring.attention().cudnn);
                  x.ring_bytes = allocated - int64_t(ring.attention().scratch_bytes()) - starts;
                  // With documents and the zigzag layout the own block goes to cuDNN's packed
                  // documents (which scan the ids), and only then.
                  const bool cudnn_documents = k::attention_cudnn_built() && k::attention_cudnn_documents() &&
                                               !ring.attention().force_fallback;
                  x.scanned_as_expected = (starts > 0) == (docs && zigzag && cudnn_documents);
                  x.planned_ring_bytes = runtime::ring_buffer_bytes(a, /*cuda=*/true);
                  x.g_o = o.download();
                  x.g_lse = host_copy(lse.as<float>(), rows);
                  x.g_dq = dq.download();
                  x.g_dk = dk.download();
                  x.g_dv = dv.download();
                  cudaFree(idx);
                  cudaFree(seg);
                  cudaFree(lse_cpu);
                }
                CUDA_CHECK(cudaStreamDestroy(s));
              },
              &mem);
        }
        CUDA_CHECK(cudaStreamDestroy(mem_stream));

        for (int r = 0; r < P; ++r) {
          INFO("rank " << r);
          const Rank& x = ranks[size_t(r)];
          require_similar("o", x.g_o, x.o);
          for (size_t i = 0; i < rows; ++i) {
            INFO("lse row " << i);
            REQUIRE(std::abs(x.g_lse[i] - x.lse[i]) <= 2e-4f * (1.0f + std::abs(x.lse[i])));
          }
          CHECK(x.ring_bytes == x.planned_ring_bytes);
          CHECK(x.scanned_as_expected);
          require_similar("dq", x.g_dq, x.dq);
          require_similar("dk", x.g_dk, x.dk);
          require_similar("dv", x.g_dv, x.dv);
        }
      }
    }
}
