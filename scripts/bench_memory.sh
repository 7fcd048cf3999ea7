#!/usr/bin/env bash
# Activation memory against sequence length on this CPU, per recompute policy (and with
# activations offloaded to host memory, "+offload"): the planned device peak per rank (what
# --plan predicts), the planned host arena, and ms/step, for the tiny model made 8 layers
# deep (what is kept per layer is what recompute and offload trade; one rank, one thread).
# Prints all three; writes the peak and ms/step to build/bench/memory.tsv and, when
# matplotlib is installed (pip install matplotlib), plots them in build/bench/memory.png.
#   scripts/bench_memory.sh [SEQ_LEN ...]      (default: 1024 2048 4096 8192)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
[[ -f $build_dir/CMakeCache.txt ]] || cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" --target autosp-train corpus -j"$(nproc)" >/dev/null
lens=("$@")
((${#lens[@]})) || lens=(1024 2048 4096 8192)
mkdir -p build/bench
tsv=build/bench/memory.tsv
printf 'policy\tseq_len\tplanned_mib\tms_per_step\n' >"$tsv"
printf '%-14s %8s %14s %12s %12s\n' policy seq_len planned/rank host/rank ms/step
for policy in none selective layer full layer+offload full+offload; do
  offload=none
  [[ $policy == *+offload ]] && offload=on
  for T in "${lens[@]}"; do
    common=(--config configs/tiny-cpu.json --set model.n_layers=8 --set train.recompute="${policy%+offload}"
            --set train.offload="$offload"
            --set train.seq_len="$T" --set model.max_seq_len="$T" --set train.batch_size=1 --set data.val=
            --set train.eval_every=0)
    "$build_dir/autosp-train" "${common[@]}" --plan --plan-json build/bench/plan.json >/dev/null
    # planned device peak and host arena per rank in MiB (the host one "-" when nothing is offloaded)
    read -r mib host < <(python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))["memory_bytes"]
print("%.1f" % (m["total"] / 2**20), "%.1f" % (m["host"] / 2**20) if m["host"] else "-")' build/bench/plan.json)
    ms=$(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$build_dir/autosp-train" "${common[@]}" --set train.steps=3 \
         --set log.every=3 --set checkpoint.every=0 --set log.metrics_file= |
         grep -E '^step' | tail -1 | sed -E 's/.*\| ([0-9.]+) ms\/step.*/\1/')
    printf '%-14s %8s %14s %12s %12s\n' "$policy" "$T" "$mib MiB" "$([[ $host == - ]] && echo - || echo "$host MiB")" "$ms"
    printf '%s\t%s\t%s\t%s\n' "$policy" "$T" "$mib" "$ms" >>"$tsv"
  done
done
python3 - "$tsv" <<'PY' || echo "(no plot: pip install matplotlib)"
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
for policy in ("none", "selective", "layer", "full", "layer+offload", "full+offload"):
    r = [x for x in rows if x["policy"] == policy]
    t = [int(x["seq_len"]) for x in r]
    a.plot(t, [float(x["planned_mib"]) for x in r], marker="o", label=policy)
    b.plot(t, [float(x["ms_per_step"]) for x in r], marker="o", label=policy)
a.set(xlabel="seq_len", ylabel="planned memory per rank (MiB)", xscale="log", yscale="log")
b.set(xlabel="seq_len", ylabel="ms/step", xscale="log", yscale="log")
a.legend(); b.legend(); fig.tight_layout()
fig.savefig(sys.argv[1].replace(".tsv", ".png"))
print("wrote", sys.argv[1].replace(".tsv", ".png"))
PY
