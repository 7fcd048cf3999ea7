// The packed-documents tables of cuDNN's ragged attention (kernels/cuda/attention_documents.h)
// against the same tables computed naively here, or (a ring's visiting block) against the
// pairs of equal ids they must cover. Integer results and float copies: exact.
#include <catch2/catch.hpp>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/attention_documents.h"
#include "tests/cuda/cuda_test_util.h"

namespace gpu = autosp::kernels::cuda;

using namespace autosp::cuda_test;

namespace {

struct Expected {
  std::vector<int32_t> starts;  // the runs' first tokens, then B·T
  int32_t max_len = 0;
  bool ordered = true;
};

// Runs of equal ids per row; ordered iff each row's run ids increase, -1 counting as the largest.
Expected naive_scan(const std::vector<int32_t>& seg, int64_t B, int64_t T) {
  Expected e;
  auto key = [](int32_t id) { return id < 0 ? int64_t(1) << 40 : int64_t(id); };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const size_t g = size_t(b * T + t);
      if (t == 0 || seg[g] != seg[g - 1]) {
        e.starts.push_back(int32_t(g));
        if (t > 0 && key(seg[g]) <= key(seg[g - 1])) e.ordered = false;
      }
    }
  e.starts.push_back(int32_t(B * T));
  for (size_t i = 0; i + 1 < e.starts.size(); ++i) e.max_len = std::max(e.max_len, e.starts[i + 1] - e.starts[i]);
  return e;
}

// Rows of documents of random lengths (1 to max_doc tokens), ids counting up from a random
// first id, some rows ending in padding (-1).
std::vector<int32_t> random_documents(int64_t B, int64_t T, int max_doc, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> seg;
  for (int64_t b = 0; b < B; ++b) {
    int32_t id = int32_t(rng() % 5);
    const int64_t padding = b % 2 ? int64_t(rng() % 40) : 0;
    for (int64_t t = 0; t < T - padding;) {
      const int64_t len = std::min<int64_t>(T - padding - t, 1 + int64_t(rng() % uint32_t(max_doc)));
      seg.insert(seg.end(), size_t(len), id++);
      t += len;
    }
    seg.insert(seg.end(), size_t(padding), -1);
  }
  return seg;
}

void check_scan(const std::vector<int32_t>& seg, int64_t B, int64_t T) {
  const Expected want = naive_scan(seg, B, T);
  int32_t* seg_dev = device_copy(seg);
  int32_t* starts = device_copy(std::vector<int32_t>(size_t(B * T + 1), -7));
  gpu::DocumentScan* scan = nullptr;
  REQUIRE(cudaMalloc(&scan, sizeof(gpu::DocumentScan)) == cudaSuccess);
  gpu::document_scan(seg_dev, B, T, starts, scan, nullptr);
  gpu::DocumentScan got;
  REQUIRE(cudaMemcpy(&got, scan, sizeof got, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(got.count == int32_t(want.starts.size() - 1));
  REQUIRE(got.max_len == want.max_len);
  REQUIRE(bool(got.ordered) == want.ordered);
  REQUIRE(host_copy(starts, want.starts.size()) == want.starts);

  // The ragged tables for a batch of twice the documents: the extra slots are empty sequences
  // at the end of the tokens.
  const int64_t count = got.count, slots = 2 * count, H = 3, Hkv = 1, D = 8;
  int32_t* lens = device_copy(std::vector<int32_t>(size_t(slots), -7));
  std::vector<int64_t*> tables(3);
  for (int64_t*& t : tables) REQUIRE(cudaMalloc(&t, size_t(slots + 1) * 8) == cudaSuccess);
  gpu::ragged_tables(starts, count, slots, H, Hkv, D, lens, tables[0], tables[1], tables[2], nullptr);
  const std::vector<int32_t> got_lens = host_copy(lens, size_t(slots));
  std::vector<std::vector<int64_t>> got_tables;
  for (int64_t* t : tables) {
    std::vector<int64_t> h(size_t(slots + 1));
    REQUIRE(cudaMemcpy(h.data(), t, h.size() * 8, cudaMemcpyDeviceToHost) == cudaSuccess);
    got_tables.push_back(h);
  }
  for (int64_t i = 0; i <= slots; ++i) {
    const int64_t first = want.starts[size_t(std::min(i, count))];
    if (i < slots) REQUIRE(got_lens[size_t(i)] == (i < count ? want.starts[size_t(i + 1)] - first : 0));
    REQUIRE(got_tables[0][size_t(i)] == first * H * D);
    REQUIRE(got_tables[1][size_t(i)] == first * Hkv * D);
    REQUIRE(got_tables[2][size_t(i)] == first * H);
  }
  for (int64_t* t : tables) cudaFree(t);
  cudaFree(lens);
  cudaFree(scan);
  cudaFree(starts);
  cudaFree(seg_dev);
}

// visiting_tables for query window [q0, q1) of q_seg's [B, Tq] rows and key window [k0, k1) of
// k_seg's [B, Tk] rows, checked by what the tables mean rather than how they are built: read
// back into (row, query, key) pairs, the sequences must cover exactly the pairs of equal ids,
// each once, with every offset in its window, offsets never decreasing, and the slots past the
// documents empty. Returns the unordered flag (then only the flag is checked).
bool check_visiting(const std::vector<int32_t>& q_seg, const std::vector<int32_t>& k_seg, int64_t B, int64_t Tq,
                    int64_t Tk, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
  const Expected scan = naive_scan(q_seg, B, Tq);
  const int64_t count = int64_t(scan.starts.size()) - 1, slots = count + 5, H = 3, Hkv = 1, D = 8;
  const int64_t nq = q1 - q0, nk = k1 - k0;
  int32_t* q_dev = device_copy(q_seg);
  int32_t* k_dev = device_copy(k_seg);
  int32_t* starts = device_copy(scan.starts);
  int32_t* seq_q = device_copy(std::vector<int32_t>(size_t(slots), -7));
  int32_t* seq_kv = device_copy(std::vector<int32_t>(size_t(slots), -7));
  int32_t* unordered = device_copy(std::vector<int32_t>(1, 0));
  std::vector<int64_t*> tables(3);
  for (int64_t*& t : tables) REQUIRE(cudaMalloc(&t, size_t(slots + 1) * 8) == cudaSuccess);
  gpu::visiting_tables(q_dev, starts, count, k_dev, B, Tq, Tk, q0, q1, k0, k1, slots, H, Hkv, D, seq_q, seq_kv,
                       tables[0], tables[1], tables[2], unordered, nullptr);
  const std::vector<int32_t> lq = host_copy(seq_q, size_t(slots)), lk = host_copy(seq_kv, size_t(slots));
  std::vector<std::vector<int64_t>> off;
  for (int64_t* t : tables) {
    std::vector<int64_t> h(size_t(slots + 1));
    REQUIRE(cudaMemcpy(h.data(), t, h.size() * 8, cudaMemcpyDeviceToHost) == cudaSuccess);
    off.push_back(h);
  }
  const bool flag = host_copy(unordered, 1)[0] != 0;
  auto free_all = [&] {
    for (int64_t* t : tables) cudaFree(t);
    for (int32_t* p : {q_dev, k_dev, starts, seq_q, seq_kv, unordered}) cudaFree(p);
  };
  if (flag) {
    free_all();
    return true;
  }

  // covered[(b·nq + i)·nk + j]: how many sequences pair window query i with window key j of row b.
  std::vector<int> covered(size_t(B * nq * nk), 0);
  for (int64_t i = 0; i <= slots; ++i) {
    INFO("slot " << i << " of " << slots << ", " << count << " documents");
    REQUIRE(off[0][size_t(i)] % (H * D) == 0);
    REQUIRE(off[1][size_t(i)] % (Hkv * D) == 0);
    if (i > 0)
      for (const auto& o : off) REQUIRE(o[size_t(i)] >= o[size_t(i - 1)]);
    if (i == slots) break;
    if (i >= count) REQUIRE((lq[size_t(i)] == 0 && lk[size_t(i)] == 0));
    REQUIRE((lq[size_t(i)] == 0) == (lk[size_t(i)] == 0));
    if (lq[size_t(i)] == 0) continue;
    // First query and key: rows from the windows' starts (row q0 / k0 of batch row 0).
    const int64_t qf = off[0][size_t(i)] / (H * D), kf = off[1][size_t(i)] / (Hkv * D);
    const int64_t b = (qf + q0) / Tq, qi = (qf + q0) % Tq - q0, kb = (kf + k0) / Tk, kj = (kf + k0) % Tk - k0;
    REQUIRE(b == kb);
    REQUIRE(off[2][size_t(i)] == (b * nq + qi) * H);
    REQUIRE((qi >= 0 && qi + lq[size_t(i)] <= nq && kj >= 0 && kj + lk[size_t(i)] <= nk));
    for (int64_t x = qi; x < qi + lq[size_t(i)]; ++x)
      for (int64_t y = kj; y < kj + lk[size_t(i)]; ++y) ++covered[size_t((b * nq + x) * nk + y)];
  }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t x = 0; x < nq; ++x)
      for (int64_t y = 0; y < nk; ++y) {
        const bool visible = q_seg[size_t(b * Tq + q0 + x)] == k_seg[size_t(b * Tk + k0 + y)];
        INFO("row " << b << ", query " << q0 + x << ", key " << k0 + y);
        REQUIRE(covered[size_t((b * nq + x) * nk + y)] == (visible ? 1 : 0));
      }
  free_all();
  return false;
}

}  // namespace

TEST_CASE("visiting_tables pairs each query document with its keys in another block", "[cuda][attention]") {
  REQUIRE_GPU();
  // Queries and keys in rows of different lengths (a ring's are equal; attention.h allows any).
  const int64_t B = 4, Tq = 300, Tk = 240;
  // Two blocks of rows with documents of up to 60 tokens and ids from 0 to 4 up: many ids in
  // both, some in one only; odd rows end in padding, which pairs with padding.
  const std::vector<int32_t> q = random_documents(B, Tq, 60, 11), k = random_documents(B, Tk, 60, 12);
  SECTION("whole rows") { REQUIRE_FALSE(check_visiting(q, k, B, Tq, Tk, 0, Tq, 0, Tk)); }
  SECTION("zigzag windows: late queries, every key") {
    REQUIRE_FALSE(check_visiting(q, k, B, Tq, Tk, Tq / 2, Tq, 0, Tk));
  }
  SECTION("zigzag windows: every query, early keys") {
    REQUIRE_FALSE(check_visiting(q, k, B, Tq, Tk, 0, Tq, 0, Tk / 2));
  }
  SECTION("odd windows") { REQUIRE_FALSE(check_visiting(q, k, B, Tq, Tk, 17, 251, 3, 190)); }
  SECTION("one long document on both sides") {
    REQUIRE_FALSE(check_visiting(std::vector<int32_t>(size_t(B * Tq), 7), std::vector<int32_t>(size_t(B * Tk), 7), B,
                                 Tq, Tk, Tq / 2, Tq, 0, Tk));
  }
  SECTION("no id in common") {
    std::vector<int32_t> other = k;
    for (int32_t& id : other) id = id < 0 ? id : id + 1000;
    REQUIRE_FALSE(check_visiting(q, other, B, Tq, Tk, 0, Tq, 0, Tk));
  }
  SECTION("two kinds of padding do not pair") {
    std::vector<int32_t> other = k;
    for (int32_t& id : other) id = id < 0 ? -2 : id;
    REQUIRE_FALSE(check_visiting(q, other, B, Tq, Tk, 0, Tq, 0, Tk));
  }
  SECTION("keys out of order are reported") {
    std::vector<int32_t> bad = k;
    std::reverse(bad.begin() + Tk, bad.begin() + 2 * Tk);  // row 1, ids counting down
    REQUIRE(check_visiting(q, bad, B, Tq, Tk, 0, Tq, 0, Tk));
  }
}

TEST_CASE("document_scan finds each row's documents and checks their order", "[cuda][attention]") {
  REQUIRE_GPU();
  SECTION("random documents, short rows") { check_scan(random_documents(4, 300, 60, 1), 4, 300); }
  // 1,500,000 tokens: every one of the scan's 1024 threads walks ~1465 of them.
  SECTION("random documents, long rows") { check_scan(random_documents(3, 500000, 20000, 2), 3, 500000); }
  SECTION("rows of one document each, all id 0") { check_scan(std::vector<int32_t>(2 * 150, 0), 2, 150); }
  SECTION("one-token documents") {
    std::vector<int32_t> seg(777);
    for (size_t i = 0; i < seg.size(); ++i) seg[i] = int32_t(i);
    check_scan(seg, 1, 777);
  }
  SECTION("an id that comes back is out of order") {
    std::vector<int32_t> seg;
    for (int32_t id : {0, 1, 0, 2}) seg.insert(seg.end(), 50, id);
    check_scan(seg, 1, 200);
    REQUIRE_FALSE(naive_scan(seg, 1, 200).ordered);
  }
  SECTION("padding before a document is out of order") {
    std::vector<int32_t> seg(100, -1);
    std::fill(seg.begin() + 40, seg.end(), 0);
    check_scan(seg, 1, 100);
    REQUIRE_FALSE(naive_scan(seg, 1, 100).ordered);
  }
}

TEST_CASE("lse moves between [B, H, T] and token-major [B*T, H] exactly", "[cuda][attention]") {
  REQUIRE_GPU();
  const int64_t B = 2, H = 3, T = 37;
  const std::vector<float> lse = random(size_t(B * H * T), 5);
  float* lse_dev = device_copy(lse);
  float* stats = device_copy(std::vector<float>(lse.size()));
  float* back = device_copy(std::vector<float>(lse.size()));
  gpu::lse_to_token_major(lse_dev, stats, B, H, T, nullptr);
  gpu::lse_from_token_major(stats, back, B, H, T, nullptr);
  const std::vector<float> got = host_copy(stats, lse.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) REQUIRE(got[size_t((b * T + t) * H + h)] == lse[size_t((b * H + h) * T + t)]);
  REQUIRE(host_copy(back, lse.size()) == lse);
  cudaFree(lse_dev);
  cudaFree(stats);
  cudaFree(back);
}
