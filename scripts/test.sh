#!/usr/bin/env bash
# The second command of the README: install what is missing, build (warnings are errors
# under CI), and run the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
werror=OFF
[[ "${CI:-}" == "true" ]] && werror=ON
bash scripts/setup.sh -DAUTOSP_WERROR=$werror
cd build
ctest --output-on-failure -j"$(nproc)" "$@"
