// set_cpu_threads sets both thread pools the CPU kernels use: OpenMP's and OpenBLAS's (the
// trainer gives each of several ranks on one machine its share of the cores).
#include <catch2/catch.hpp>

#include <cblas.h>
#include <omp.h>

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
