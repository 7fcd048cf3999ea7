#!/usr/bin/env bash
# ZeRO on this CPU with 4 ranks (each one thread): persistent bytes per rank and ms/step for
# stages 0-3, for the tiny config and the ~100M-parameter configs/llama-100m-cpu.json.
# The persistent bytes are what the runtime allocated (printed by autosp-train at start);
# ms/step averages the last logged window.
#   scripts/bench_zero.sh [RANKS]    (default 4; sp = RANKS, dp = 1)
#   DTYPE=bf16 scripts/bench_zero.sh  a bf16 program (emulated on the CPU): stages 1-2 keep its
#                                     matrices whole in bf16 beside f32 master shards
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
[[ -f $build_dir/CMakeCache.txt ]] || cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" --target autosp-train corpus -j"$(nproc)" >/dev/null
ranks=${1:-4}
dtype=${DTYPE:-f32}

run() {  # config stage -> "persistent ms"
  local out
  out=$(mpirun --allow-run-as-root --oversubscribe -np "$ranks" -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 \
    "$build_dir/autosp-train" --config "$1" --set parallel.sp="$ranks" --set parallel.zero_stage="$2" --set train.dtype="$dtype" \
    --set train.steps=4 --set log.every=2 --set train.eval_every=0 --set data.val= --set checkpoint.every=0 \
    --set log.metrics_file= 2>&1)
  local mem ms
  mem=$(grep -E '^persistent memory per rank' <<<"$out" | sed -E 's/.*total ([^;]*);.*/\1/')
  ms=$(grep -E '^step +[0-9]+/' <<<"$out" | tail -1 | sed -E 's/.*\| ([0-9.]+) ms\/step.*/\1/')
  echo "$mem|$ms"
}

echo "train.dtype $dtype, $ranks ranks"
printf '%-26s %-6s %18s %12s\n' config zero persistent/rank ms/step
for cfg in configs/tiny-cpu.json configs/llama-100m-cpu.json; do
  for stage in 0 1 2 3; do
    IFS='|' read -r mem ms < <(run "$cfg" "$stage")
    printf '%-26s %-6s %18s %12s\n' "$(basename "$cfg")" "$stage" "$mem" "$ms"
  done
done
