#!/usr/bin/env bash
# Communication overlap on this CPU: 2 ranks (one thread each), the tiny model and a wider
# one, per SP strategy, with parallel.overlap off and on: ms/step and the exposed
# communication (time the compute stream waited for collectives) as a share of the step.
# Writes the Chrome trace of one overlapped step per run to build/traces/.
#   scripts/bench_overlap.sh [SEQ_LEN ...]      (default: 8192 16384; 32768 takes minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
[[ -f $build_dir/CMakeCache.txt ]] || cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" --target autosp-train corpus -j"$(nproc)" >/dev/null
mkdir -p build/traces
lens=("$@")
((${#lens[@]})) || lens=(8192 16384)

run() {  # model-sets strategy seq overlap trace -> "ms comm_ms"
  local out
  out=$(mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 \
    "$build_dir/autosp-train" --config configs/tiny-cpu.json $1 --set parallel.sp=2 \
    --set parallel.sp_strategy="$2" --set train.seq_len="$3" --set model.max_seq_len="$3" \
    --set parallel.overlap="$4" --set train.batch_size=1 --set train.steps=3 --set log.every=1 \
    --set train.eval_every=0 --set data.val= --set checkpoint.every=0 --set log.metrics_file= --trace "$5" 2>&1)
  grep -E '^step +3/3' <<<"$out" | sed -E 's/.*\| ([0-9.]+) ms\/step \| comm ([0-9.]+) ms.*/\1 \2/'
}

printf '%-7s %-8s %-8s %-8s %12s %12s %9s\n' model seq_len strategy overlap ms/step comm_ms comm%
for model in tiny wide; do
  sets=""
  [[ $model == wide ]] && sets="--set model.d_model=512 --set model.n_heads=8 --set model.n_kv_heads=8 --set model.ffn_hidden=1376"
  for T in "${lens[@]}"; do
    for strat in ulysses ring; do
      for ov in false true; do
        trace=build/traces/overlap_${model}_${T}_${strat}_${ov}.json
        read -r ms comm < <(run "$sets" "$strat" "$T" "$ov" "$trace")
        printf '%-7s %-8s %-8s %-8s %12.1f %12.1f %8.1f%%\n' "$model" "$T" "$strat" "$ov" "$ms" "$comm" \
          "$(awk -v c="$comm" -v m="$ms" 'BEGIN { print 100 * c / m }')"
      done
    done
  done
done
echo "traces: build/traces/overlap_*.json (open in https://ui.perfetto.dev or chrome://tracing)"
