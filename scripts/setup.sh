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

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$jobs"  # also generates build/data (the corpus target)
