#!/usr/bin/env bash
# GFLOP/s of the CPU matmul, attention and cross-entropy kernels, next to raw OpenBLAS sgemm.
# Threads: OMP_NUM_THREADS (OpenBLAS reads it too unless OPENBLAS_NUM_THREADS is set).
# Usage: scripts/bench_cpu_ops.sh [--quick]      BUILD_DIR=build-x to use another build tree.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
if [[ ! -f $build_dir/CMakeCache.txt ]]; then
  cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build_dir" --target bench_cpu_ops -j"${JOBS:-2}"
exec "$build_dir/scripts/bench/bench_cpu_ops" "$@"
