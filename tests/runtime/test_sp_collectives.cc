// Tensor collectives against index arithmetic: every rank fills its tensor with values that
// encode (rank, flat index), runs the collective through run_local, and each output element
// must be exactly the input element the collective's definition names. Element types of 4
// and 2 bytes (data movement is dtype-agnostic); small integer floats for the reduction, so
// the expected sums are exact. Every case runs twice: on host memory, and through the path
// device buffers take (StagingMemOps: packing by copy2d into the MemOps's scratch, sums
// staged through the host).
#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/sp_collectives.h"
#include "tests/runtime/staging_mem_ops.h"

using namespace autosp::runtime;
using Dims = std::vector<int64_t>;

namespace {

int64_t numel(const Dims& d) {
  int64_t n = 1;
  for (int64_t x : d) n *= x;
  return n;
}

// Row-major flat index of coordinates c in dims d, and back.
int64_t flat(const Dims& d, const Dims& c) {
  int64_t f = 0;
  for (size_t i = 0; i < d.size(); ++i) f = f * d[i] + c[i];
  return f;
}
Dims coords(const Dims& d, int64_t f) {
  Dims c(d.size());
  for (size_t i = d.size(); i-- > 0;) c[i] = f % d[i], f /= d[i];
  return c;
}

template <class T>
T encode(int rank, int64_t f) {
  return static_cast<T>(rank * 1000 + f);  // f < 1000 in every case below
}

template <class T>
std::vector<T> input(const Dims& d, int rank) {
  std::vector<T> x(numel(d));
  for (int64_t f = 0; f < numel(d); ++f) x[f] = encode<T>(rank, f);
  return x;
}

// Runs body(comm, mem) on P ranks; out[r] is what rank r produced. staged: the communicator
// and each rank's tensor collectives move bytes the way device buffers do (one shared
// StagingMemOps for the communicator, one per rank for packing, like CudaMemOps's scratch).
template <class T>
std::vector<std::vector<T>> on_ranks(int P, bool staged,
                                     const std::function<std::vector<T>(Communicator&, MemOps&)>& body) {
  std::vector<std::vector<T>> out(P);
  autosp::testing::StagingMemOps shared;
  run_local(
      P,
      [&](Communicator& c) {
        if (!staged) {
          out[c.rank()] = body(c, host_mem_ops());
          return;
        }
        autosp::testing::StagingMemOps mine;
        out[c.rank()] = body(c, mine);
      },
      staged ? &shared : nullptr);
  return out;
}

template <class T>
void check_all_to_all(int P, bool staged, Dims dims, int split, int concat) {
  dims[split] *= P;  // divisible by P whatever the base extent
  Dims out_dims = dims;
  out_dims[split] /= P;
  out_dims[concat] *= P;
  const Dims chunk_dims = [&] { Dims c = dims; c[split] /= P; return c; }();
  auto got = on_ranks<T>(P, staged, [&](Communicator& c, MemOps& mem) {
    std::vector<T> x = input<T>(dims, c.rank()), y(numel(out_dims));
    all_to_all_tensor(c, x.data(), y.data(), dims, split, concat, sizeof(T), mem);
    return y;
  });
  for (int r = 0; r < P; ++r) {
    int64_t bad = 0;
    for (int64_t f = 0; f < numel(out_dims); ++f) {
      // Along concat, out is the chunks of ranks 0..P-1; the chunk from src is src's piece r
      // along split.
      Dims c = coords(out_dims, f);
      const int src = static_cast<int>(c[concat] / chunk_dims[concat]);
      c[concat] %= chunk_dims[concat];
      c[split] += r * chunk_dims[split];
      bad += got[r][f] != encode<T>(src, flat(dims, c));
    }
    CHECK(bad == 0);
  }
}

// (split, concat): both Ulysses directions, outermost/innermost, split == concat, neighbours.
const std::vector<std::pair<int, int>> kAxisPairs = {{2, 1}, {1, 2}, {0, 3}, {3, 0},
                                                     {1, 1}, {0, 1}, {2, 3}, {3, 1}};

}  // namespace

TEST_CASE("all_to_all_tensor sends piece j along the split axis to rank j and concatenates in rank order") {
  for (bool staged : {false, true})
    for (int P : {1, 2, 3, 4})
      for (auto [split, concat] : kAxisPairs) {
        CAPTURE(staged, P, split, concat);
        check_all_to_all<int32_t>(P, staged, {2, 3, 2, 4}, split, concat);
        check_all_to_all<uint16_t>(P, staged, {3, 2, 2, 2}, split, concat);
      }
}

TEST_CASE("all_to_all_tensor heads-to-sequence undoes sequence-to-heads (the Ulysses round trip)") {
  for (bool staged : {false, true})
    for (int P : {1, 2, 3, 4}) {
      CAPTURE(staged, P);
      const Dims q_dims = {2, 3, 2 * P, 4};  // [B, T/P, H, D]
      auto got = on_ranks<float>(P, staged, [&](Communicator& c, MemOps& mem) {
        std::vector<float> x = input<float>(q_dims, c.rank()), heads(x.size()), back(x.size());
        all_to_all_tensor(c, x.data(), heads.data(), q_dims, 2, 1, sizeof(float), mem);  // [B, T, H/P, D]
        const Dims h_dims = {2, 3 * P, 2, 4};
        all_to_all_tensor(c, heads.data(), back.data(), h_dims, 1, 2, sizeof(float), mem);  // [B, T/P, H, D]
        return back;
      });
      for (int r = 0; r < P; ++r) CHECK(got[r] == input<float>(q_dims, r));
    }
}

TEST_CASE("all_to_all_tensor packs and unpacks a non-outermost axis with one strided copy per chunk") {
  const int P = 4;
  const Dims q_dims = {2, 3, 2 * P, 4};  // [B, T/P, H, D]: split 2 packs, concat 1 unpacks (B > 1)
  std::vector<int64_t> copies_2d(P), synchronizes(P);
  autosp::testing::StagingMemOps shared;
  run_local(
      P,
      [&](Communicator& c) {
        autosp::testing::StagingMemOps mine;
        std::vector<float> x = input<float>(q_dims, c.rank()), y(x.size());
        all_to_all_tensor(c, x.data(), y.data(), q_dims, 2, 1, sizeof(float), mine);
        copies_2d[c.rank()] = mine.copies_2d;
        synchronizes[c.rank()] = mine.synchronizes;
      },
      &shared);
  CHECK(copies_2d == std::vector<int64_t>(P, 2 * P));
  // The local communicator reads the packed chunks at once: the packing was completed first.
  CHECK(synchronizes == std::vector<int64_t>(P, 1));
  CHECK(shared.copies_2d == 0);
}

TEST_CASE("all_gather_tensor concatenates every rank's tensor along the axis in rank order") {
  for (bool staged : {false, true})
    for (int P : {1, 2, 3, 4})
      for (int axis = 0; axis < 4; ++axis) {
        CAPTURE(staged, P, axis);
        const Dims dims = {2, 3, 1, 4};
        Dims out_dims = dims;
        out_dims[axis] *= P;
        auto got = on_ranks<int32_t>(P, staged, [&](Communicator& c, MemOps& mem) {
          std::vector<int32_t> x = input<int32_t>(dims, c.rank()), y(numel(out_dims));
          all_gather_tensor(c, x.data(), y.data(), dims, axis, sizeof(int32_t), mem);
          return y;
        });
        for (int r = 0; r < P; ++r) {
          int64_t bad = 0;
          for (int64_t f = 0; f < numel(out_dims); ++f) {
            Dims c = coords(out_dims, f);
            const int src = static_cast<int>(c[axis] / dims[axis]);
            c[axis] %= dims[axis];
            bad += got[r][f] != encode<int32_t>(src, flat(dims, c));
          }
          CHECK(bad == 0);
        }
      }
}

TEST_CASE("reduce_scatter_tensor leaves on rank r piece r along the axis of the sum over ranks") {
  for (bool staged : {false, true})
    for (int P : {1, 2, 3, 4})
      for (int axis = 0; axis < 4; ++axis) {
        CAPTURE(staged, P, axis);
        Dims dims = {2, 3, 1, 2};
        dims[axis] *= P;
        Dims out_dims = dims;
        out_dims[axis] /= P;
        // Small integers: every partial sum is exact in fp32, so the order of summation is moot.
        auto value = [](int rank, int64_t f) { return static_cast<float>((rank + 1) * (f % 7) + rank); };
        auto got = on_ranks<float>(P, staged, [&](Communicator& c, MemOps& mem) {
          std::vector<float> x(numel(dims)), y(numel(out_dims));
          for (int64_t f = 0; f < numel(dims); ++f) x[f] = value(c.rank(), f);
          reduce_scatter_tensor(c, x.data(), y.data(), dims, axis, mem);
          return y;
        });
        for (int r = 0; r < P; ++r) {
          int64_t bad = 0;
          for (int64_t f = 0; f < numel(out_dims); ++f) {
            Dims c = coords(out_dims, f);
            c[axis] += r * out_dims[axis];
            float want = 0;
            for (int src = 0; src < P; ++src) want += value(src, flat(dims, c));
            bad += got[r][f] != want;
          }
          CHECK(bad == 0);
        }
      }
}
