// The CPU kernels' threads: our OpenMP loops and OpenBLAS (the OpenMP build) share one count.
#pragma once

namespace autosp::kernels::cpu {

// Cores this process may run on (its affinity mask; all online cores if that is unknown).
int available_cores();
// Threads for every later OpenMP region and GEMM (n >= 1).
void set_cpu_threads(int n);

}  // namespace autosp::kernels::cpu
