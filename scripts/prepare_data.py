#!/usr/bin/env python3
"""Turn text files into byte-level token files for autosp-train (data.format "u16").

Tokenizer: every byte of a document is one token (ids 0-255); the end-of-document token
256 follows each document, so the vocabulary is 257 (model.vocab_size = 257,
data.eod_token = 256, data.documents = true). Each input file is one document (or several
with --split-blank-lines). Output: raw little-endian uint16 tokens, no header.

Documents are kept in the order given (sorted when a directory is given); the last
ceil(val_fraction * n_docs) documents, at least one, go to the validation file and the rest
to the training file, so no document is split between the two.

Python 3 standard library only.
"""
import argparse
import array
import math
import os
import sys

EOD = 256
VOCAB = 257


def collect_files(inputs):
    """Expand directories (sorted, regular files only, symlinks skipped so a
    licence linked under two names counts once)."""
    files = []
    for p in inputs:
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                full = os.path.join(p, name)
                if os.path.isfile(full) and not os.path.islink(full):
                    files.append(full)
        elif os.path.isfile(p):
            files.append(p)
        else:
            sys.exit(f"prepare_data.py: {p}: no such file or directory")
    return files


def read_documents(files, split_blank_lines):
    docs = []
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()
        if split_blank_lines:
            parts = [d.strip(b"\n") for d in data.replace(b"\r\n", b"\n").split(b"\n\n\n")]
            docs.extend(d for d in parts if d)
        elif data:
            docs.append(data)
    return docs


def encode(docs):
    """Bytes → token ids with EOD after every document, as little-endian uint16."""
    tokens = array.array("H")
    for d in docs:
        tokens.extend(d)  # iterating bytes gives ints 0-255
        tokens.append(EOD)
    if sys.byteorder != "little":
        tokens.byteswap()
    return tokens


def write_tokens(path, tokens):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        tokens.tofile(fh)
    os.replace(tmp, path)  # never leave a half-written token file under the real name


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="text files or directories of text files (one document per file)")
    ap.add_argument("--train-out", required=True, help="output token file for training (u16)")
    ap.add_argument("--val-out", required=True, help="output token file for validation (u16)")
    ap.add_argument("--val-fraction", type=float, default=0.1,
                    help="fraction of documents (the last ones) for validation; at least one (default 0.1)")
    ap.add_argument("--split-blank-lines", action="store_true",
                    help="also split files into documents at runs of two or more blank lines")
    args = ap.parse_args()

    if not 0.0 < args.val_fraction < 1.0:
        sys.exit(f"prepare_data.py: --val-fraction {args.val_fraction}: expected a number in (0, 1)")
    docs = read_documents(collect_files(args.inputs), args.split_blank_lines)
    if len(docs) < 2:
        sys.exit(f"prepare_data.py: {len(docs)} non-empty document(s); need at least 2 (one for train, one for val)")
    n_val = min(len(docs) - 1, max(1, math.ceil(args.val_fraction * len(docs))))
    train, val = docs[:-n_val], docs[-n_val:]
    t_train, t_val = encode(train), encode(val)
    write_tokens(args.train_out, t_train)
    write_tokens(args.val_out, t_val)
    print(f"prepare_data.py: {len(train)} docs / {len(t_train)} tokens -> {args.train_out}; "
          f"{len(val)} docs / {len(t_val)} tokens -> {args.val_out} (vocab {VOCAB}, eod {EOD})")


if __name__ == "__main__":
    main()
