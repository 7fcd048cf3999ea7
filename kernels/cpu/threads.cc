#include "kernels/cpu/threads.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace autosp::kernels::cpu {

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, int(std::thread::hardware_concurrency()));
}

int cpu_threads() { return omp_get_max_threads(); }

int ranks_on_this_machine(int world_size) {
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  return std::max(1, local ? std::atoi(local) : world_size);
}

int default_cpu_threads(int ranks_here) { return std::max(1, available_cores() / std::max(1, ranks_here)); }

double cpu_cores_per_rank(int threads, int ranks_here) {
  const double machine = double(std::max(1u, std::thread::hardware_concurrency())) / std::max(1, ranks_here);
  return std::min({double(std::max(1, threads)), double(available_cores()), machine});
}

void set_cpu_threads(int n) {
  n = std::max(1, n);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace autosp::kernels::cpu
