// The SP = 1 equivalence under mpirun (real processes, the MPI communicator): for the world
// size it is started with, each case trains one step (the last case 30) under sequence
// parallelism and compares loss and every parameter gradient with a one-process run that
// each rank computes itself. Prints "N passed, M failed" on rank 0; exit 1 on any failure.
#include <cstdio>

#include "runtime/comm.h"
#include "tests/trainer/sp_equivalence.h"

using namespace autosp;
using namespace autosp::testing;

namespace {

struct Case {
  std::string name;
  std::vector<std::string> sets;
  int steps = 1;
  bool full_size = false;  // configs/tiny-cpu.json as it is
};

std::vector<Case> cases_for(int world) {
  if (world == 2)
    return {{"ulysses sp=2", {"parallel.sp=2", "parallel.sp_strategy=ulysses"}},
            {"ring sp=2", {"parallel.sp=2", "parallel.sp_strategy=ring"}},
            {"ring sp=2 seq_len 62", {"parallel.sp=2", "parallel.sp_strategy=ring", "train.seq_len=62"}},
            {"ulysses sp=2 without documents", {"parallel.sp=2", "data.documents=false"}},
            {"dp=2 x sp=1", {"parallel.sp=1"}},
            {"ZeRO-3 ring sp=2, 5 steps", {"parallel.sp=2", "parallel.sp_strategy=ring", "parallel.zero_stage=3",
                                           "train.steps=5"}, 5},
            {"tiny-cpu.json: 30 steps at sp=2 follow the sp=1 curve", {"parallel.sp=2", "train.steps=30"}, 30, true}};
  return {{"ulysses sp=4", {"parallel.sp=4", "parallel.sp_strategy=ulysses"}},
          {"ring sp=4", {"parallel.sp=4", "parallel.sp_strategy=ring"}},
          {"hybrid 2x2", {"parallel.sp=4", "parallel.sp_strategy=hybrid"}},
          {"ulysses sp=4 GQA kv=2", {"parallel.sp=4", "parallel.sp_strategy=ulysses", "model.n_kv_heads=2"}},
          {"6 heads at sp=4", {"parallel.sp=4", "model.n_heads=6", "model.n_kv_heads=6"}},
          {"ulysses sp=4 seq_len 62", {"parallel.sp=4", "parallel.sp_strategy=ulysses", "train.seq_len=62"}},
          {"dp=2 x sp=2 ring", {"parallel.sp=2", "parallel.sp_strategy=ring"}},
          {"ZeRO-1 hybrid 2x2, 5 steps", {"parallel.sp=4", "parallel.sp_strategy=hybrid", "parallel.zero_stage=1",
                                          "train.steps=5"}, 5},
          {"ZeRO-2 dp=2 x sp=2, 5 steps", {"parallel.sp=2", "parallel.zero_stage=2", "train.steps=5"}, 5},
          {"ZeRO-3 ulysses sp=4, 5 steps", {"parallel.sp=4", "parallel.sp_strategy=ulysses", "parallel.zero_stage=3",
                                            "train.steps=5"}, 5}};
}

}  // namespace

int main() {
  auto world = runtime::mpi_world();
  const int rank = world->rank(), size = world->size();
  int passed = 0, failed = 0;
  for (const Case& c : cases_for(size)) {
    const trainer::Options o = sp_test_options(c.sets, c.full_size);
    std::string error;
    auto ref_t = trainer::Trainer::create(reference_options(o, size));
    AUTOSP_CHECK(ref_t.ok()) << ref_t.status().message();
    const StepRecord ref = record_steps(*ref_t.value(), c.steps, error);
    auto t = trainer::Trainer::create(o, "", world.get());
    AUTOSP_CHECK(t.ok()) << t.status().message();
    const StepRecord got = record_steps(*t.value(), c.steps, error);
    std::string diff = error.empty() ? compare_records(ref, got, c.steps > 1 ? 1e-5 : 2e-6) : error;
    float bad = diff.empty() ? 0.0f : 1.0f;
    world->all_reduce_sum(&bad, 1);
    if (!diff.empty()) std::fprintf(stderr, "rank %d: %s: %s\n", rank, c.name.c_str(), diff.c_str());
    if (rank == 0) std::printf("%s: %s\n", c.name.c_str(), bad > 0 ? "FAILED" : "ok");
    (bad > 0 ? failed : passed)++;
  }
  if (rank == 0) std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
