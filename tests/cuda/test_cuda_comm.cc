// The runtime's collectives on device buffers against the same collectives on host buffers:
// the local communicator with a CudaMemOps (several SP ranks sharing one GPU), the tensor
// collectives packing with a CudaMemOps (synchronous, and stream-ordered on a rank's own
// stream), and the NCCL communicator at world size 1 (the only size one GPU allows).
//
// Every case runs one program twice per rank — on host vectors through the host local
// communicator, then on device copies of the same vectors — and requires every output
// identical bit for bit: data movement is exact, and the device paths of the local
// communicator add on the host in the same rank order (the host path itself is checked
// against index arithmetic and serial sums in tests/runtime). At world size 1, NCCL's sums
// are of one term, so they are exact too. Without a CUDA device each test prints why it
// skipped and passes.
#include <catch2/catch.hpp>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/check.h"
#include "runtime/comm.h"
#include "runtime/cuda/comm_nccl.h"
#include "runtime/cuda/cuda_mem_ops.h"
#include "runtime/sp_collectives.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/runtime/comm_checks.h"

using namespace autosp::runtime;
namespace tc = autosp::testing::comm;
using Bytes = std::vector<uint8_t>;
using Dims = std::vector<int64_t>;

namespace {

// Where a rank's buffers live, and how its tensor collectives pack them.
struct Placement {
  bool device = false;
  bool synchronous = true;       // the rank's CudaMemOps
  cudaStream_t stream = nullptr;  // its stream; null: the rank makes its own
};

// A rank's buffers: host vectors, or device copies of the same bytes. mem() is what its
// tensor collectives pack with.
class Space {
 public:
  explicit Space(const Placement& p) : device_(p.device), stream_(p.stream) {
    if (!device_) return;
    if (!stream_) {
      CUDA_CHECK(cudaStreamCreate(&own_stream_));
      stream_ = own_stream_;
    }
    mem_ = std::make_unique<CudaMemOps>(stream_, p.synchronous);
  }
  ~Space() {
    mem_.reset();  // synchronizes its stream before the buffers go
    for (void* d : device_buffers_) CUDA_CHECK(cudaFree(d));
    if (own_stream_) CUDA_CHECK(cudaStreamDestroy(own_stream_));
  }
  Space(const Space&) = delete;
  Space& operator=(const Space&) = delete;

  MemOps& mem() { return device_ ? *mem_ : host_mem_ops(); }

  // A buffer holding init.
  void* make(const Bytes& init) {
    if (!device_) return host_buffers_.emplace_back(init).data();
    void* d = nullptr;
    CUDA_CHECK(cudaMalloc(&d, std::max<size_t>(init.size(), 1)));
    device_buffers_.push_back(d);
    CUDA_CHECK(cudaMemcpy(d, init.data(), init.size(), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaDeviceSynchronize());  // a pageable copy may land after cudaMemcpy returns
    return d;
  }
  template <class T>
  T* make_as(const Bytes& init) {
    return static_cast<T*>(make(init));
  }
  // The bytes of p once everything issued on this rank's stream (a stream-ordered
  // communicator's work included, when it shares the stream) has run.
  Bytes read(const void* p, size_t bytes) {
    Bytes out(bytes);
    if (!device_) {
      if (bytes > 0) std::memcpy(out.data(), p, bytes);
      return out;
    }
    mem_->synchronize();
    CUDA_CHECK(cudaMemcpy(out.data(), p, bytes, cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  bool device_;
  cudaStream_t stream_;
  cudaStream_t own_stream_ = nullptr;
  std::unique_ptr<CudaMemOps> mem_;
  std::deque<Bytes> host_buffers_;  // a deque: buffers handed out never move
  std::vector<void*> device_buffers_;
};

// Inputs: rank r's element i of stream `salt` (comm_checks.h's generators, whose float
// magnitudes make a sum's bits depend on the order of addition).
Bytes floats(int salt, int rank, int64_t n) {
  Bytes b(size_t(n) * sizeof(float));
  for (int64_t i = 0; i < n; ++i) {
    const float v = tc::value(salt, rank, i);
    std::memcpy(b.data() + i * sizeof(float), &v, sizeof(float));
  }
  return b;
}
Bytes noise(int salt, int rank, int64_t n) {
  Bytes b(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) b[size_t(i)] = tc::byte(salt, rank, i);
  return b;
}
// Outputs start as a pattern, the same on both paths (the host path, checked in
// tests/runtime, overwrites every byte it should).
Bytes filled(int64_t n) { return Bytes(size_t(n), 0xEE); }

int64_t numel(const Dims& d) {
  int64_t n = 1;
  for (int64_t x : d) n *= x;
  return n;
}

using Outputs = std::vector<Bytes>;
struct Program {
  const char* name;
  std::function<Outputs(Communicator&, Space&)> run;
};

// Every Communicator call.
const std::vector<Program>& communicator_programs() {
  static const std::vector<Program> programs = {
      {"all_reduce_sum",
       [](Communicator& c, Space& s) {
         // Past one staging block (2^20 floats) of the local communicator's device path.
         const int64_t n = (int64_t(1) << 20) + 5;
         float* x = s.make_as<float>(floats(1, c.rank(), n));
         c.all_reduce_sum(x, n);
         c.all_reduce_sum(nullptr, 0);
         return Outputs{s.read(x, size_t(n) * sizeof(float))};
       }},
      {"all_gather",
       [](Communicator& c, Space& s) {
         const int64_t bytes = 13;  // odd: chunk offsets are not aligned
         void* send = s.make(noise(2, c.rank(), bytes));
         void* recv = s.make(filled(bytes * c.size()));
         c.all_gather(send, recv, bytes);
         return Outputs{s.read(recv, size_t(bytes * c.size()))};
       }},
      {"reduce_scatter_sum",
       [](Communicator& c, Space& s) {
         const int64_t n = 1000;
         float* send = s.make_as<float>(floats(3, c.rank(), n * c.size()));
         float* recv = s.make_as<float>(filled(n * int64_t(sizeof(float))));
         c.reduce_scatter_sum(send, recv, n);
         return Outputs{s.read(recv, size_t(n) * sizeof(float))};
       }},
      {"all_to_all",
       [](Communicator& c, Space& s) {
         const int64_t bytes = 7;
         void* send = s.make(noise(4, c.rank(), bytes * c.size()));
         void* recv = s.make(filled(bytes * c.size()));
         c.all_to_all(send, recv, bytes);
         return Outputs{s.read(recv, size_t(bytes * c.size()))};
       }},
      {"send_recv ring",
       [](Communicator& c, Space& s) {
         const int p = c.size(), r = c.rank(), dst = (r + 1) % p, src = (r + p - 1) % p;
         void* send = s.make(noise(5, r, tc::ring_bytes(r)));
         void* recv = s.make(filled(tc::ring_bytes(src)));
         c.send_recv(send, tc::ring_bytes(r), dst, recv, tc::ring_bytes(src), src);
         return Outputs{s.read(recv, size_t(tc::ring_bytes(src)))};
       }},
      {"broadcast from every root",
       [](Communicator& c, Space& s) {
         Outputs out;
         for (int root = 0; root < c.size(); ++root) {
           const int64_t bytes = 21 + root;
           void* data = s.make(noise(6, c.rank(), bytes));
           c.broadcast(data, bytes, root);
           out.push_back(s.read(data, size_t(bytes)));
         }
         return out;
       }},
      {"split, nested split and barrier",
       [](Communicator& c, Space& s) {
         Outputs out;
         auto g = c.split(c.rank() % 2, -c.rank());  // reversed keys: new ranks in reverse order
         const int32_t me = c.rank();
         Bytes me_bytes(sizeof me);
         std::memcpy(me_bytes.data(), &me, sizeof me);
         void* ids = s.make(filled(int64_t(sizeof me) * g->size()));
         g->all_gather(s.make(me_bytes), ids, sizeof me);
         out.push_back(s.read(ids, sizeof me * size_t(g->size())));
         float* x = s.make_as<float>(floats(7, c.rank(), 300));
         g->all_reduce_sum(x, 300);
         out.push_back(s.read(x, 300 * sizeof(float)));
         const int dst = (g->rank() + 1) % g->size(), src = (g->rank() + g->size() - 1) % g->size();
         void* from = s.make(filled(sizeof me));
         g->send_recv(s.make(me_bytes), sizeof me, dst, from, sizeof me, src);
         out.push_back(s.read(from, sizeof me));
         auto h = g->split(0, g->rank());
         float* y = s.make_as<float>(floats(8, c.rank(), 50));
         h->all_reduce_sum(y, 50);
         out.push_back(s.read(y, 50 * sizeof(float)));
         auto none = c.split(-1, 0);  // a negative color joins no group
         out.push_back(Bytes{uint8_t(none == nullptr)});
         g->barrier();
         c.barrier();
         return out;
       }},
      {"started collectives waited in a rank-dependent order",
       [](Communicator& c, Space& s) {
         const int p = c.size(), r = c.rank(), dst = (r + 1) % p, src = (r + p - 1) % p;
         const int64_t n = 3000, bytes = 5;
         float* x = s.make_as<float>(floats(9, r, n));
         void* send = s.make(noise(10, r, bytes * p));
         void* recv = s.make(filled(bytes * p));
         void* ring_send = s.make(noise(11, r, tc::ring_bytes(r, 1)));
         void* ring_recv = s.make(filled(tc::ring_bytes(src, 1)));
         auto a = c.start_all_reduce_sum(x, n);
         auto b = c.start_all_to_all(send, recv, bytes);
         auto d = c.start_send_recv(ring_send, tc::ring_bytes(r, 1), dst, ring_recv, tc::ring_bytes(src, 1), src);
         if (r % 2 == 0) {
           a->wait(), b->wait(), d->wait();
         } else {
           d->wait(), b->wait(), a->wait();
         }
         return Outputs{s.read(x, size_t(n) * sizeof(float)), s.read(recv, size_t(bytes * p)),
                        s.read(ring_recv, size_t(tc::ring_bytes(src, 1)))};
       }},
  };
  return programs;
}

// The tensor collectives: Ulysses' all-to-alls there and back with bf16-sized elements,
// other axis pairs, and gathers and reduce-scatters along every axis (outermost ones skip
// the packing, inner ones pack and unpack with copy2d).
const std::vector<Program>& tensor_programs() {
  static const std::vector<Program> programs = {
      {"all_to_all_tensor, Ulysses [B, T/P, H, D] split 2 concat 1 and back",
       [](Communicator& c, Space& s) {
         const int64_t P = c.size(), esize = 2;
         const Dims q = {2, 6, 2 * P, 16}, heads_dims = {2, 6 * P, 2, 16};
         const int64_t bytes = numel(q) * esize;
         void* x = s.make(noise(20, c.rank(), bytes));
         void* heads = s.make(filled(bytes));
         void* back = s.make(filled(bytes));
         all_to_all_tensor(c, x, heads, q, 2, 1, esize, s.mem());
         all_to_all_tensor(c, heads, back, heads_dims, 1, 2, esize, s.mem());
         return Outputs{s.read(heads, size_t(bytes)), s.read(back, size_t(bytes))};
       }},
      {"all_to_all_tensor, other axis pairs",
       [](Communicator& c, Space& s) {
         Outputs out;
         for (auto [split, concat] : std::vector<std::pair<int, int>>{{0, 3}, {3, 1}, {1, 1}, {2, 3}}) {
           Dims dims = {2, 3, 2, 4};
           dims[size_t(split)] *= c.size();
           const int64_t bytes = numel(dims) * 4;
           void* x = s.make(noise(21 + split, c.rank(), bytes));
           void* y = s.make(filled(bytes));
           all_to_all_tensor(c, x, y, dims, split, concat, 4, s.mem());
           out.push_back(s.read(y, size_t(bytes)));
         }
         return out;
       }},
      {"all_gather_tensor along every axis",
       [](Communicator& c, Space& s) {
         Outputs out;
         for (int axis = 0; axis < 4; ++axis) {
           const Dims dims = {2, 3, 2, 4};
           const int64_t bytes = numel(dims) * 2;
           void* x = s.make(noise(30 + axis, c.rank(), bytes));
           void* y = s.make(filled(bytes * c.size()));
           all_gather_tensor(c, x, y, dims, axis, 2, s.mem());
           out.push_back(s.read(y, size_t(bytes * c.size())));
         }
         return out;
       }},
      {"reduce_scatter_tensor along every axis",
       [](Communicator& c, Space& s) {
         Outputs out;
         for (int axis = 0; axis < 4; ++axis) {
           Dims dims = {2, 3, 2, 4};
           dims[size_t(axis)] *= c.size();
           const int64_t n = numel(dims);
           float* x = s.make_as<float>(floats(40 + axis, c.rank(), n));
           float* y = s.make_as<float>(filled(n / c.size() * int64_t(sizeof(float))));
           reduce_scatter_tensor(c, x, y, dims, axis, s.mem());
           out.push_back(s.read(y, size_t(n / c.size()) * sizeof(float)));
         }
         return out;
       }},
  };
  return programs;
}

// Every rank's outputs on P local ranks: host buffers through the host communicator, or
// device buffers (placed as `where` says) through one synchronous CudaMemOps shared by the
// ranks.
std::vector<Outputs> run_local_program(int P, const Program& program, const Placement& where) {
  std::vector<Outputs> out(static_cast<size_t>(P));
  std::unique_ptr<CudaMemOps> shared;
  if (where.device) shared = std::make_unique<CudaMemOps>(nullptr, true);
  run_local(
      P,
      [&](Communicator& c) {
        Space s(where);
        out[size_t(c.rank())] = program.run(c, s);
      },
      shared.get());
  return out;
}

// Each program's outputs at world size 1, all run on one NCCL communicator (one
// initialisation, and later programs run after earlier ones on the same communicator):
// device buffers, and packing on the communicator's stream (stream-ordered end to end).
std::vector<Outputs> run_nccl_programs(const std::vector<const Program*>& programs) {
  cudaStream_t stream = nullptr;
  CUDA_CHECK(cudaStreamCreate(&stream));
  std::vector<Outputs> out;
  run_local(1, [&](Communicator& bootstrap) {
    auto nccl = make_nccl_communicator(bootstrap, stream);
    for (const Program* program : programs) {
      Space s(Placement{true, false, stream});
      out.push_back(program->run(*nccl, s));
    }
  });
  CUDA_CHECK(cudaStreamDestroy(stream));
  return out;
}

void require_same(const std::vector<Outputs>& host, const std::vector<Outputs>& device) {
  REQUIRE(host.size() == device.size());
  for (size_t r = 0; r < host.size(); ++r) {
    INFO("rank " << r);
    REQUIRE(host[r].size() == device[r].size());
    for (size_t k = 0; k < host[r].size(); ++k) {
      INFO("output " << k);
      CHECK(host[r][k] == device[r][k]);
    }
  }
}

}  // namespace

TEST_CASE("local communicator on device buffers: every call equals the host path bit for bit", "[comm]") {
  REQUIRE_GPU();
  for (const Program& program : communicator_programs())
    for (int P : {1, 2, 3, 4}) {
      INFO(program.name << " on " << P << " ranks");
      require_same(run_local_program(P, program, {}), run_local_program(P, program, {true, true, nullptr}));
    }
}

TEST_CASE("tensor collectives on device buffers equal the host versions, packing synchronously or on a stream",
          "[comm]") {
  REQUIRE_GPU();
  for (const Program& program : tensor_programs())
    for (int P : {1, 2, 3, 4}) {
      const auto host = run_local_program(P, program, {});
      for (bool synchronous : {true, false}) {
        INFO(program.name << " on " << P << " ranks, " << (synchronous ? "synchronous" : "stream-ordered")
                          << " packing");
        require_same(host, run_local_program(P, program, {true, synchronous, nullptr}));
      }
    }
}

TEST_CASE("NCCL communicator at world size 1: every call and tensor collective equals the host path", "[comm]") {
  REQUIRE_GPU();
  std::vector<const Program*> programs;
  for (const auto* list : {&communicator_programs(), &tensor_programs()})
    for (const Program& program : *list) programs.push_back(&program);
  const std::vector<Outputs> nccl = run_nccl_programs(programs);
  REQUIRE(nccl.size() == programs.size());
  for (size_t i = 0; i < programs.size(); ++i) {
    INFO(programs[i]->name);
    require_same(run_local_program(1, *programs[i], {}), {nccl[i]});
  }
}

TEST_CASE("NCCL communicator is stream-ordered, and after abort every call throws CommError", "[comm]") {
  REQUIRE_GPU();
  cudaStream_t stream = nullptr;
  CUDA_CHECK(cudaStreamCreate(&stream));
  bool ordered = false;
  int rank = -1, size = -1;
  std::string after_abort;
  run_local(1, [&](Communicator& bootstrap) {
    auto nccl = make_nccl_communicator(bootstrap, stream);
    ordered = nccl->stream_ordered();
    rank = nccl->rank();
    size = nccl->size();
    nccl->barrier();
    nccl->abort("test over");
    try {
      nccl->barrier();
    } catch (const CommError& e) {
      after_abort = e.what();
    }
  });
  CUDA_CHECK(cudaStreamDestroy(stream));
  CHECK(ordered);
  CHECK(rank == 0);
  CHECK(size == 1);
  CHECK_THAT(after_abort, Catch::Contains("test over"));
}
