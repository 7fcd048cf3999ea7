#!/usr/bin/env python3
"""Synthetic long-range recall data for autosp-train, for any sequence length.

Each example is exactly SEQ_LEN byte-level tokens (vocab 257; ASCII so a file reads as text):

    ^ K v ; K v ; ... K v ;  0 7 3 9 ... 1 4  ? K v ? K v ...
    |  --- pairs ---------|  --- filler -----|  -- queries --|
    1  3 * PAIRS tokens      the rest           3 * QUERIES tokens

  ^       start of the example
  K v ;   a key ('A', 'B', ... : --keys distinct symbols, distinct within an example), its
          value ('a', 'b', ... : --values symbols, drawn with replacement) and a separator
  filler  random digits '0'-'9' across the middle of the context: noise to attend past
  ? K v   a query: one of the example's keys (distinct, random order) followed by its value

Only the query answers v are scored: the companion file <out>.mask has one byte per token,
1 exactly at those answer tokens (data.documents = false, the loader turns the other
targets into ignore index -1). A model can answer only by finding K in the pairs at the
start of the context, SEQ_LEN tokens back; chance is 1/VALUES (loss ln VALUES = 2.77 for
16). Examples are laid end to end, aligned to train.seq_len windows, plus one trailing '^'
so the last window has its shifted target; train with train.seq_len = SEQ_LEN.

Writes <out-dir>/<prefix>_train.u16 (+ .mask) and <prefix>_val.u16 (+ .mask), raw
little-endian uint16. Deterministic for a given --seed. Python 3 standard library only.
"""
import argparse
import array
import os
import random
import sys

START, SEP, QUERY = ord("^"), ord(";"), ord("?")
KEY_BASE, VALUE_BASE = ord("A"), ord("a")
FILLER = [ord(c) for c in "0123456789"]


def example(rng, args):
    """Tokens and mask (1 = scored target) of one example of exactly seq_len tokens."""
    keys = rng.sample(range(args.keys), args.pairs)
    values = [rng.randrange(args.values) for _ in keys]
    toks = [START]
    for k, v in zip(keys, values):
        toks += [KEY_BASE + k, VALUE_BASE + v, SEP]
    n_filler = args.seq_len - len(toks) - 3 * args.queries
    toks += [rng.choice(FILLER) for _ in range(n_filler)]
    mask = [0] * len(toks)
    for i in rng.sample(range(args.pairs), args.queries):
        toks += [QUERY, KEY_BASE + keys[i], VALUE_BASE + values[i]]
        mask += [0, 0, 1]
    assert len(toks) == args.seq_len
    return toks, mask


def write_split(path, n, rng, args):
    toks, mask = array.array("H"), bytearray()
    for _ in range(n):
        t, m = example(rng, args)
        toks.extend(t)
        mask.extend(m)
    toks.append(START)  # the shifted target of the last window; never scored
    mask.append(0)
    if sys.byteorder != "little":
        toks.byteswap()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    for p, data in ((path, toks.tobytes()), (path + ".mask", bytes(mask))):
        with open(p + ".tmp", "wb") as fh:
            fh.write(data)
        os.replace(p + ".tmp", p)
    print(f"make_recall_data.py: {n} examples, {len(toks)} tokens -> {path} (+ .mask)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-len", type=int, default=256, help="tokens per example = train.seq_len (default 256)")
    ap.add_argument("--pairs", type=int, default=8, help="key/value pairs per example (default 8)")
    ap.add_argument("--queries", type=int, default=4, help="queries per example, ≤ pairs (default 4)")
    ap.add_argument("--keys", type=int, default=16, help="distinct key symbols A.. (≤ 26, default 16)")
    ap.add_argument("--values", type=int, default=16, help="distinct value symbols a.. (≤ 26, default 16)")
    ap.add_argument("--n-train", type=int, default=4096, help="training examples (default 4096)")
    ap.add_argument("--n-val", type=int, default=256, help="validation examples (default 256)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out-dir", default="build/data", help="output directory (default build/data)")
    ap.add_argument("--prefix", default="recall", help="file name prefix (default recall)")
    args = ap.parse_args()

    if not 1 <= args.keys <= 26 or not 1 <= args.values <= 26:
        ap.error("--keys and --values must be in 1..26 (letters)")
    if not 1 <= args.queries <= args.pairs <= args.keys:
        ap.error("need 1 <= --queries <= --pairs <= --keys")
    need = 1 + 3 * args.pairs + 3 * args.queries
    if args.seq_len < need:
        ap.error(f"--seq-len {args.seq_len} is shorter than the {need} tokens of pairs and queries")
    if args.n_train < 1 or args.n_val < 1:
        ap.error("--n-train and --n-val must be >= 1")

    rng = random.Random(args.seed)
    write_split(os.path.join(args.out_dir, f"{args.prefix}_train.u16"), args.n_train, rng, args)
    write_split(os.path.join(args.out_dir, f"{args.prefix}_val.u16"), args.n_val, rng, args)


if __name__ == "__main__":
    main()
