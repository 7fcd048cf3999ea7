// The CPU kernels' threads: our OpenMP loops and OpenBLAS (the OpenMP build) share one count.
#pragma once

namespace autosp::kernels::cpu {

// Cores this process may run on (its affinity mask; all online cores if that is unknown).
int available_cores();
// Threads for every later OpenMP region and GEMM (n >= 1).
void set_cpu_threads(int n);
// Threads the CPU kernels run with now.
int cpu_threads();
// Ranks of a `world_size` job on this machine: mpirun's OMPI_COMM_WORLD_LOCAL_SIZE, else all.
int ranks_on_this_machine(int world_size);
// The kernel threads each of `ranks_here` ranks on this machine gets by default: this
// process's cores (its affinity) shared among them, at least 1.
int default_cpu_threads(int ranks_here);
// The cores a rank running `threads` kernel threads keeps busy when `ranks_here` ranks share
// this machine: its threads, no more than the cores its affinity allows, and no more than its
// share of the machine's cores (4 ranks on 2 cores: half a core each).
double cpu_cores_per_rank(int threads, int ranks_here);

}  // namespace autosp::kernels::cpu
