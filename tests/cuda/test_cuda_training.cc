// Whole training steps on the GPU (train.device = cuda) against the same bf16 program on the
// CPU, and sequence parallelism on one GPU (ranks as threads over the local communicator,
// moving device buffers) against SP = 1. Without a CUDA device each test prints why it
// skipped and passes.
//
// Tolerances (as in tests/trainer/test_bf16.cc, which bounds bf16 against f32): the GPU and
// the CPU run one bf16 program, rounding to bf16 at the same points, but their fp32 sums run
// in other orders (tiled GEMMs, cuDNN's attention, the cross-entropy's bf16 dlogits), and each
// difference can flip a bf16 rounding that later ops carry on. A loss is a mean over hundreds
// of tokens: 1% of it. A gradient: 5% of its tensor's largest element (floored at 1e-3 of the
// largest gradient of any parameter, for the key biases whose exact gradient is 0). A
// missing kernel argument, a stream race or a wrong layout is off by O(1).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>

#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_mem_ops.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/cuda/stream_comm.h"
#include "tests/trainer/sp_equivalence.h"

using namespace autosp;
using namespace autosp::testing;
using autosp::trainer::Options;
using autosp::trainer::Trainer;

namespace {

Options gpu(std::vector<std::string> sets) {
  sets.push_back("train.dtype=bf16");
  sets.push_back("train.device=cuda");
  return sp_test_options(sets);
}

Options cpu_of(Options o) {
  o.train.device = "cpu";
  return o;
}

// `world` ranks as threads on one GPU; the local communicator moves their device buffers.
StepRecord parallel_on_one_gpu(const Options& o, int world, int steps) {
  cudaStream_t stream;
  REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  std::vector<StepRecord> per_rank;
  {
    runtime::CudaMemOps mem(stream, /*synchronous=*/true);
    per_rank = record_local(o, world, steps, &mem);
  }
  cudaStreamDestroy(stream);
  for (int r = 1; r < world; ++r) CHECK(per_rank[r].losses == per_rank[0].losses);
  return per_rank[0];
}

// The same with the ranks' mesh on a stream-ordered stand-in for NCCL (tests/cuda/stream_comm.h):
// the backend, executor and ZeRO state take their NCCL paths (no host synchronisation around
// collectives, only events), which otherwise run only across several GPUs. The bootstrap
// world is the local communicator over host memory, as MPI is under mpirun.
StepRecord ordered_on_one_gpu(const Options& o, int world, int steps) {
  const auto hub = std::make_shared<cuda_test::StreamCommHub>(world);
  const Trainer::DeviceWorld stand_in = [&](runtime::Communicator& w, runtime::Backend& b) {
    return std::unique_ptr<runtime::Communicator>(
        std::make_unique<cuda_test::StreamComm>(hub, w.rank(), runtime::cuda_comm_stream(b)));
  };
  const std::vector<StepRecord> per_rank = record_local(o, world, steps, nullptr, stand_in);
  for (int r = 1; r < world; ++r) CHECK(per_rank[size_t(r)].losses == per_rank[0].losses);
  return per_rank[0];
}

}  // namespace

TEST_CASE("a GPU training step equals the CPU's bf16 step: loss and every gradient", "[cuda][train]") {
  REQUIRE_GPU();
  for (const char* arch : {"llama", "gpt2"})
    for (const char* docs : {"true", "false"}) {
      DYNAMIC_SECTION(arch << (std::string(docs) == "true" ? " with packed documents" : "")) {
        const Options o = gpu({std::string("model.arch=") + arch, "model.max_seq_len=64",
                               std::string("data.documents=") + docs});
        const StepRecord want = record_single(cpu_of(o), 1);
        const StepRecord got = record_single(o, 1);
        CHECK(compare_rounded(want, got, 1e-2, 5e-2) == "");
      }
    }
}

TEST_CASE("GQA and a head dim of 128 (the cuDNN path) train like the CPU", "[cuda][train]") {
  REQUIRE_GPU();
  const Options o = gpu({"model.d_model=256", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_hidden=256",
                         "data.documents=false"});
  CHECK(compare_rounded(record_single(cpu_of(o), 1), record_single(o, 1), 1e-2, 5e-2) == "");
}

TEST_CASE("20 GPU steps follow the CPU's bf16 loss curve", "[cuda][train]") {
  REQUIRE_GPU();
  const Options o = gpu({"train.steps=20"});
  const StepRecord want = record_single(cpu_of(o), 20);
  const StepRecord got = record_single(o, 20);
  // Adam normalises each update, so round-off differences grow over steps: 2% by step 20.
  for (size_t i = 0; i < want.losses.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(std::abs(got.losses[i] - want.losses[i]) <= 2e-2 * want.losses[i]);
  }
  CHECK(got.losses.back() < 0.8 * got.losses.front());
}

TEST_CASE("SP and ZeRO on one GPU over a stream-ordered communicator (NCCL's semantics) equal SP = 1",
          "[cuda][sp][nccl_path]") {
  REQUIRE_GPU();
  const std::vector<std::pair<const char*, std::vector<std::string>>> cases = {
      {"ulysses sp=2, zero 1", {"parallel.sp=2", "parallel.sp_strategy=ulysses", "parallel.zero_stage=1"}},
      {"ring sp=4", {"parallel.sp=4", "parallel.sp_strategy=ring"}},
      {"hybrid sp=4, zero 3", {"parallel.sp=4", "parallel.sp_strategy=hybrid", "parallel.zero_stage=3"}},
  };
  for (const auto& [name, sets] : cases) {
    DYNAMIC_SECTION(name) {
      const Options o = gpu(sets);
      const int world = int(o.parallel.sp);
      // Two steps: the second reads what the device-side update (and ZeRO's gather) wrote. Its
      // loss follows parameters one AdamW step moved by gradients already within 5%, hence
      // 2% rather than one step's 1% (as in the ZeRO test below).
      const StepRecord want = record_single(reference_options(o, world), 2);
      const StepRecord got = ordered_on_one_gpu(o, world, 2);
      CHECK(compare_rounded(want, got, 2e-2, 5e-2) == "");
    }
  }
}

TEST_CASE("SP = 2 and 4 on one GPU (local communicator) equal SP = 1", "[cuda][sp]") {
  REQUIRE_GPU();
  for (int sp : {2, 4})
    for (const char* overlap : {"true", "false"}) {
      DYNAMIC_SECTION("ulysses sp=" << sp << " overlap=" << overlap) {
        const Options o = gpu({"parallel.sp=" + std::to_string(sp), "parallel.sp_strategy=ulysses",
                               std::string("parallel.overlap=") + overlap});
        const StepRecord want = record_single(reference_options(o, sp), 1);
        const StepRecord got = parallel_on_one_gpu(o, sp, 1);
        CHECK(compare_rounded(want, got, 1e-2, 5e-2) == "");
      }
    }
}

TEST_CASE("ring and hybrid SP on one GPU (local communicator) equal SP = 1", "[cuda][sp][ring]") {
  REQUIRE_GPU();
  for (const auto& [strategy, sp] : {std::pair<const char*, int>{"ring", 2}, {"ring", 4}, {"hybrid", 4}}) {
    DYNAMIC_SECTION(strategy << " sp=" << sp) {
      const Options o = gpu({"parallel.sp=" + std::to_string(sp), std::string("parallel.sp_strategy=") + strategy});
      const StepRecord want = record_single(reference_options(o, sp), 1);
      const StepRecord got = parallel_on_one_gpu(o, sp, 1);
      CHECK(compare_rounded(want, got, 1e-2, 5e-2) == "");
    }
  }
}

TEST_CASE("without a GPU, train.device = cuda fails at start, naming the key", "[cuda]") {
  if (cuda_test::no_device().empty()) {
    WARN("skipped: this machine has a GPU");
    return;
  }
  auto t = Trainer::create(gpu({}), "");
  REQUIRE(!t.ok());
  CHECK(t.status().message().find("train.device = \"cuda\"") != std::string::npos);
}

TEST_CASE("ZeRO 1 and 3 with SP = 2 on one GPU equal SP = 1", "[cuda][sp][zero]") {
  REQUIRE_GPU();
  for (const char* stage : {"1", "3"}) {
    DYNAMIC_SECTION("zero " << stage) {
      const Options o = gpu({"parallel.sp=2", "parallel.sp_strategy=ulysses", std::string("parallel.zero_stage=") + stage});
      const StepRecord want = record_single(reference_options(o, 2), 2);
      const StepRecord got = parallel_on_one_gpu(o, 2, 2);
      // Two steps: the second reads parameters the device-side update and gather produced.
      CHECK(compare_rounded(want, got, 2e-2, 5e-2) == "");
    }
  }
}

TEST_CASE("micro-batches on the GPU train as one larger batch", "[cuda][accum]") {
  REQUIRE_GPU();
  // Gradients accumulate in place (accumulate_gradients, zeroed with cudaMemsetAsync); the
  // batch of 2 runs other GEMM shapes, so bf16 roundings differ: the tolerances above.
  const StepRecord want = record_single(gpu({"train.batch_size=2"}), 3);
  const StepRecord got = record_single(gpu({"train.batch_size=1", "train.grad_accum_steps=2"}), 3);
  CHECK(compare_rounded(want, got, 1e-2, 5e-2) == "");
}

TEST_CASE("activations offloaded to pinned host memory come back intact on the GPU", "[cuda][offload]") {
  REQUIRE_GPU();
  // 1 MiB activations (16 rows x 512 tokens x 64 features in bf16): the pass parks them.
  const std::vector<std::string> sets = {"train.recompute=full", "model.d_model=64", "model.ffn_hidden=96",
                                         "train.seq_len=512", "model.max_seq_len=512", "train.batch_size=16"};
  std::vector<std::string> on = sets, off = sets;
  on.push_back("train.offload=on");
  off.push_back("train.offload=none");
  auto t = Trainer::create(gpu(on));
  REQUIRE(t.ok());
  REQUIRE(t.value()->memory_plan().host > 0);
  // The same kernels on the same data; only the arena offsets differ (which can change the
  // GEMM algorithm cuBLASLt picks), so the tolerances above rather than bit equality.
  const StepRecord want = record_single(gpu(off), 3);
  std::string error;
  const StepRecord got = record_steps(*t.value(), 3, error);
  REQUIRE(error.empty());
  CHECK(compare_rounded(want, got, 1e-2, 5e-2) == "");
}
