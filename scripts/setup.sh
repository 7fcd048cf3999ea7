#!/usr/bin/env bash
# Installs what autosp needs from Debian packages (only what is missing; apt-get update at
# most once), then configures and builds into build/. Idempotent; run as root on Debian 12.
#   scripts/setup.sh [extra cmake args...]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in build-essential cmake libopenblas-openmp-dev nlohmann-json3-dev libcli11-dev catch2 libopenmpi-dev openmpi-bin \
         python3; do
  have_pkg "$p" || need+=("$p")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# cuDNN frontend C++ headers (header-only), for the CUDA attention's cuDNN path; only with nvcc,
# and never required: without them kernels/cuda builds its own attention kernels only.
# --no-deps: the wheel's Python dependencies (the CUTLASS DSL, ~0.5 GB) are not needed for them.
if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  if ! python3 -m pip show -q nvidia-cudnn-frontend >/dev/null 2>&1; then
    echo "setup: installing nvidia-cudnn-frontend (cuDNN frontend headers)"
    python3 -m pip install -q --no-deps nvidia-cudnn-frontend >/dev/null 2>&1 ||
      echo "setup: could not pip install nvidia-cudnn-frontend; CUDA attention will use its own kernels only"
  fi
fi

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$jobs"  # also generates build/data (the corpus target)
