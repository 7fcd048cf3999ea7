// The MPI communicator (runtime/comm_mpi.cc) held to the same checks as the local one
// (tests/runtime/comm_checks.h), at every communicator size from 1 to the world size (the
// first k ranks split off), plus MPI-only properties: launched_by_mpi() and two threads
// issuing calls at once (MPI_THREAD_MULTIPLE). Run under mpirun; prints "N passed, M failed"
// on rank 0 and exits 1 on every rank if any check failed on any rank.
#include <cstdio>
#include <exception>
#include <string>
#include <thread>

#include "runtime/comm.h"
#include "tests/runtime/comm_checks.h"

using namespace autosp::runtime;
namespace tc = autosp::testing::comm;

namespace {

int passed = 0, failed = 0;

// Every rank calls this for every check (also ranks outside the group, with rep empty),
// so the world-wide failure count can be summed.
void tally(Communicator& world, const std::string& name, const tc::Report& rep) {
  for (const auto& f : rep.failures) std::fprintf(stderr, "FAILED %s: %s\n", name.c_str(), f.c_str());
  float n = static_cast<float>(rep.failures.size());
  world.all_reduce_sum(&n, 1);
  if (n == 0) {
    ++passed;
  } else {
    ++failed;
    if (world.rank() == 0) std::fprintf(stderr, "FAILED %s on %d rank(s)\n", name.c_str(), static_cast<int>(n));
  }
}

}  // namespace

int main() {
  std::unique_ptr<Communicator> world;
  try {
    world = mpi_world();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi_world() failed: %s\n", e.what());
    return 1;
  }
  const int p = world->size(), r = world->rank();
  try {
    {
      tc::Report rep;
      rep.rank = r;
      rep.expect(launched_by_mpi() == (p > 1), "launched_by_mpi() disagrees with the world size");
      tally(*world, "launched_by_mpi", rep);
    }
    for (int k = 1; k <= p; ++k) {
      auto sub = world->split(r < k ? 0 : -1, r);
      for (const auto& check : tc::all_checks()) {
        tc::Report rep;
        rep.rank = r;
        if (sub) check.run(*sub, rep, tc::SumOrder::any);
        tally(*world, std::string(check.name) + " on " + std::to_string(k) + " rank(s)", rep);
      }
    }
    {
      // Two threads, each on its own communicator, calling at the same time: what the
      // trainer's communication thread does next to the main thread.
      auto a = world->split(0, r), b = world->split(0, r);
      tc::Report rep_a, rep_b;
      rep_a.rank = rep_b.rank = r;
      std::exception_ptr thread_error;
      std::thread t([&] {
        try {
          for (int i = 0; i < 20; ++i) tc::check_all_reduce(*a, rep_a, tc::SumOrder::any);
        } catch (...) {
          thread_error = std::current_exception();
        }
      });
      for (int i = 0; i < 20; ++i) tc::check_start_ring(*b, rep_b);
      t.join();
      if (thread_error) std::rethrow_exception(thread_error);
      rep_a.failures.insert(rep_a.failures.end(), rep_b.failures.begin(), rep_b.failures.end());
      tally(*world, "two threads calling concurrently", rep_a);
    }
  } catch (const std::exception& e) {
    // Ranks may now disagree on which collective comes next; end the job rather than hang.
    world->abort(std::string("a check threw: ") + e.what());
  }
  if (r == 0) std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
