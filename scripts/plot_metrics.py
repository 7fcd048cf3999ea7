#!/usr/bin/env python3
"""Plot an autosp-train metrics file (log.metrics_file, JSON Lines).

usage: plot_metrics.py METRICS.jsonl OUT.png

Top panel: training loss and, where present, eval_loss against step. Bottom panel:
throughput (tokens/s) against step. Lines that are not JSON objects (e.g. a partly written
last line after a crash) are skipped with a warning. Needs matplotlib (pip install matplotlib).
"""
import argparse
import json
import sys


def read_metrics(path):
    rows = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                print(f"plot_metrics.py: {path}:{n}: not JSON, skipped", file=sys.stderr)
                continue
            if isinstance(obj, dict) and "step" in obj:
                rows.append(obj)
    return rows


def series(rows, key):
    """(steps, values) where the key is present and a number (NaN losses are written as null)."""
    pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics", help="JSON Lines metrics file written by autosp-train")
    ap.add_argument("out", help="output image (.png, .svg, .pdf)")
    args = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_metrics.py: needs matplotlib: pip install matplotlib")

    rows = read_metrics(args.metrics)
    if not rows:
        sys.exit(f"plot_metrics.py: {args.metrics}: no metrics lines")
    fig, (ax_loss, ax_tps) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax_loss.plot(*series(rows, "loss"), label="train loss")
    es, ev = series(rows, "eval_loss")
    if es:
        ax_loss.plot(es, ev, "o-", label="eval loss")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_tps.plot(*series(rows, "tokens_per_s"), color="tab:green")
    ax_tps.set_ylabel("tokens / s")
    ax_tps.set_xlabel("step")
    ax_tps.grid(alpha=0.3)
    fig.suptitle(args.metrics)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"plot_metrics.py: {len(rows)} points -> {args.out}")


if __name__ == "__main__":
    main()
