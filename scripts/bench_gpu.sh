#!/usr/bin/env bash
# autosp against PyTorch on one GPU (H100/H200), the Llama-270M of configs/llama-270m.json:
#   scripts/bench_gpu.sh                     8192 and 32768 tokens
#   scripts/bench_gpu.sh 8192 32768 131072   any lengths
#   scripts/bench_gpu.sh --long              131072 262144 524288, then the longest that fits
# Options (scripts/bench_gpu.py --help): --no-torch, --no-compile, --no-max-seq, --steps N,
# --config F, --set KEY=VALUE, --memory-gib G, --hardware h100|h200, --deadline UNIX_TIME.
#
# Per length: the --plan prediction (step time, MFU, planned memory, recompute policy), then
# autosp-train for a few steps (8 at <= 32k tokens: the median step_ms of steps 4-8; 3 at
# 131k and 2 beyond: the steps after the first), peak device memory from the metrics file;
# then ../shared/bench/torch_llama_baseline.py (carried in .gpu/bench/) on the same GPU:
# eager and torch.compile at <= 32k tokens, eager with --ckpt --ce-chunk 8192 beyond. Long mode
# then plans the longest context (--plan --max-seq --memory-gib) and trains one step of it; when
# that step would outlast the deadline (~2M tokens: ~18 minutes on an H200), it trains one step
# of a one-layer model at that length instead, against that model's own plan.
# train.memory_gib is 90% of the card (the budget recompute auto and --max-seq plan for).
# Data: uniform random u16 tokens < 32000 written to build/data/random32k.u16 (documents
# off). Each run has a timeout (autosp: 120 s up to 32k tokens) and nothing starts past
# BENCH_DEADLINE (Unix time; scripts/gpu_check.sh sets it from its budget).
#
# MFU, for autosp and PyTorch alike: tokens/s x (6 N_dense + 6 n_layers d_model seq_len) /
# 989 TFLOP/s, N_dense = all parameters but the token embedding (the LM head is in).
#
# Output: $OUT/bench_gpu.json (or build/bench/bench_gpu.json): the GPU, every case (tokens/s,
# MFU, ms/step, peak GiB, the plan's prediction and measured/predicted), the ratios; a table
# on stdout; each run's full output under build/bench/logs/.
# Device time, from --plan's predictions on an H100 (~50% MFU; expect more): default ~4 min,
# most of it torch.compile. --long ~9 min and more: 524288 tokens is ~1 min per step for autosp
# and for PyTorch, and the longest (~760k tokens on an H100 at 71.5 GiB, ~1.37M on an H200 at
# 126 GiB) ~2 min (H100) or ~6 min (H200) for its one step; what no longer fits the deadline is
# skipped and says so. Trim with --no-torch or fewer lengths.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3
command -v "$py" >/dev/null || py=/opt/torch/.venv/bin/python3
exec "$py" scripts/bench_gpu.py "$@"
