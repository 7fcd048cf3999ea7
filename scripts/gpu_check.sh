#!/usr/bin/env bash
# One call on a GPU machine (the device tool): build with every core, then run the CUDA
# kernel tests against the CPU kernels, writing the results to $OUT (or build/gpu_check).
# Today this checks the kernels in kernels/cuda; the CUDA backend, NCCL communicator and the
# PyTorch comparison (bench_gpu.sh) are the open GPU issue. The GPU machine has no network
# and may lack the Debian -dev packages the CPU build uses (Catch2, nlohmann-json, CLI11,
# OpenBLAS, Open MPI): bring them in a carried folder (apt-get download + dpkg -x) and point
# CMAKE_PREFIX_PATH at it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/gpu_check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DAUTOSP_CUDA=ON >/dev/null
cmake --build build -j"$(nproc)" --target test_cuda test_kernels 2>&1 | tail -3
build/tests/test_cuda -r junit -o "$out/test_cuda.xml" || status=$?
build/tests/test_cuda 2>&1 | tail -3
exit "${status:-0}"
