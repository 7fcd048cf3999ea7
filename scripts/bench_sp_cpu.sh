#!/usr/bin/env bash
# Sequence-parallel scaling on this CPU: the tiny model at long sequence lengths, one rank
# (sp=1) vs two ranks splitting the same global sequence (sp=2), per strategy. Every rank
# runs one thread (OMP/OpenBLAS = 1), so sp=2 uses twice the cores of sp=1: the speedup is
# the parallel efficiency of the SP program. Prints ms/step, the speedup, and the exposed
# communication (time the compute stream waited for collectives, as a share of the step; ring
# attention's K/V exchange overlaps its compute inside the op and is not counted).
#   scripts/bench_sp_cpu.sh [SEQ_LEN ...]        (default: 8192 16384)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
[[ -f $build_dir/CMakeCache.txt ]] || cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" --target autosp-train -j"$(nproc)" >/dev/null
lens=("$@")
((${#lens[@]})) || lens=(8192 16384)
steps=4

run() {  # ranks strategy seq_len -> "ms comm%"
  local out
  out=$(mpirun --allow-run-as-root --oversubscribe -np "$1" -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 \
    "$build_dir/autosp-train" --config configs/tiny-cpu.json \
    --set parallel.sp="$1" --set parallel.sp_strategy="$2" --set train.seq_len="$3" --set model.max_seq_len="$3" \
    --set train.batch_size=1 --set train.steps=$steps --set log.every=2 --set train.eval_every=0 \
    --set data.val= --set checkpoint.every=0 --set log.metrics_file= 2>&1)
  # The last progress line averages steps 3-4 (steps 1-2 include first-touch page faults).
  local line ms comm
  line=$(grep -E '^step +[0-9]+/' <<<"$out" | tail -1)
  ms=$(sed -E 's/.*\| ([0-9.]+) ms\/step.*/\1/' <<<"$line")
  comm=$(sed -nE 's/.*\| comm ([0-9.]+) ms.*/\1/p' <<<"$line")
  echo "$ms ${comm:-0}"
}

printf '%-8s %-8s %-9s %12s %9s %12s\n' seq_len ranks strategy ms/step speedup exposed-comm
for T in "${lens[@]}"; do
  read -r base _ < <(run 1 auto "$T")
  printf '%-8s %-8s %-9s %12.1f %9s %12s\n' "$T" 1 "-" "$base" "1.00x" "-"
  for strat in ulysses ring; do
    read -r ms comm < <(run 2 "$strat" "$T")
    printf '%-8s %-8s %-9s %12.1f %8.2fx %11.1f%%\n' "$T" 2 "$strat" "$ms" \
      "$(awk -v a="$base" -v b="$ms" 'BEGIN { print a / b }')" "$(awk -v c="$comm" -v m="$ms" 'BEGIN { print 100 * c / m }')"
  done
done
