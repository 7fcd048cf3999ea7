#!/usr/bin/env bash
# Builds the default training corpus, $AUTOSP_DATA_DIR/corpus_{train,val}.u16 (default
# build/data, where configs/tiny-cpu.json looks; the CMake build also calls this) (byte-level tokens,
# vocab 257, end-of-document 256; see scripts/prepare_data.py), used by configs/tiny-cpu.json.
#
# Source: licence texts in /usr/share/common-licenses/, installed on every Debian system by
# the base-files package, so the corpus needs no download. We take only the texts that
# themselves grant "Everyone is permitted to copy and distribute verbatim copies of this
# license document" (the GNU GPL, LGPL and GFDL versions) and use them verbatim, so the
# corpus may be redistributed; the other texts there (Apache, BSD, MPL, ...) carry no such
# statement and are left out. Symlinked names (GPL -> GPL-3) are skipped so each text
# appears once.
#
# Idempotent: does nothing when both outputs exist; --force rebuilds. Output is
# deterministic (files in sorted order), so a rebuild gives identical bytes.
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=/usr/share/common-licenses
OUT=${AUTOSP_DATA_DIR:-build/data}
GRANT="Everyone is permitted to copy and distribute verbatim copies"
if [[ "${1:-}" != "--force" && -s $OUT/corpus_train.u16 && -s $OUT/corpus_val.u16 ]]; then
  echo "make_corpus.sh: $OUT/corpus_train.u16 and corpus_val.u16 exist (--force rebuilds)"
  exit 0
fi
if [[ ! -d $SRC ]]; then
  echo "make_corpus.sh: $SRC not found (it comes with Debian's base-files package)" >&2
  exit 1
fi
mapfile -t FILES < <(find "$SRC" -maxdepth 1 -type f -exec grep -l -F "$GRANT" {} + | LC_ALL=C sort)
if (( ${#FILES[@]} < 2 )); then
  echo "make_corpus.sh: found ${#FILES[@]} verbatim-copyable licence texts in $SRC, need at least 2" >&2
  exit 1
fi
mkdir -p "$OUT"
python3 scripts/prepare_data.py "${FILES[@]}" \
  --train-out "$OUT/corpus_train.u16" --val-out "$OUT/corpus_val.u16" --val-fraction 0.1
