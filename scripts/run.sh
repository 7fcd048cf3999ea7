#!/usr/bin/env bash
# The first command of the README: install what is missing, build, and train the default
# config (configs/tiny-cpu.json) on the bundled corpus, showing the progress line.
#   scripts/run.sh [autosp-train flags, e.g. --set train.steps=50]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec build/autosp-train --config configs/tiny-cpu.json "$@"
