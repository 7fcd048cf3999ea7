// set_cpu_threads sets both thread pools the CPU kernels use: OpenMP's and OpenBLAS's (the
// trainer gives each of several ranks on one machine its share of the cores).
#include <catch2/catch.hpp>

#include <cblas.h>
#include <omp.h>

#include <thread>

#include "kernels/cpu/threads.h"

using namespace autosp::kernels::cpu;

TEST_CASE("set_cpu_threads sets OpenMP's and OpenBLAS's thread counts, at least 1") {
  const int before = omp_get_max_threads();
  CHECK(available_cores() >= 1);
  set_cpu_threads(1);
  CHECK(omp_get_max_threads() == 1);
  CHECK(openblas_get_num_threads() == 1);
  set_cpu_threads(2);
  CHECK(omp_get_max_threads() == 2);
  set_cpu_threads(0);  // clamped to 1 (from 2, so the call must act)
  CHECK(omp_get_max_threads() == 1);
  CHECK(openblas_get_num_threads() == 1);
  set_cpu_threads(before);
  CHECK(omp_get_max_threads() == before);
}

// A rank keeps busy no more cores than its threads, its affinity allows, or its share of the
// machine; the default threads split this process's cores among the ranks here.
TEST_CASE("a rank's share of the CPU is bounded by its threads, its affinity and the machine") {
  const int cores = available_cores();
  CHECK(default_cpu_threads(1) == cores);
  CHECK(default_cpu_threads(2 * cores) == 1);  // never 0
  CHECK(cpu_cores_per_rank(1, 1) == 1.0);
  CHECK(cpu_cores_per_rank(cores + 5, 1) <= double(cores));  // more threads than cores help nothing
  const double machine = double(std::thread::hardware_concurrency());
  CHECK(cpu_cores_per_rank(cores, 4 * int(machine)) == Approx(0.25));  // oversubscribed: a quarter core
  CHECK(ranks_on_this_machine(3) >= 1);
}
