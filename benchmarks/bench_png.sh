#!/usr/bin/env bash
# PNG decode speed: ours (go/transform/pngdec.c) against libspng, libpng and the libdeflate / zlib
# inflate limits, on web-like PNGs made from the real photos in /usr/share/backgrounds
# (benchmarks/png_set.py), in one process, alternated rounds; prints a table (benchmarks/bench_png.c).
#
#   benchmarks/bench_png.sh [--rounds N] [--base REF] [--set DIR] [--photos N]
#
#   --rounds N   rounds (default 7); the median counts
#   --base REF   also measure go/transform/pngdec.c as of git REF ("ours@REF"), in the same run
#   --set DIR    where the PNG set is built / kept (default ${XDG_CACHE_HOME:-~/.cache}/datago/pngset)
#   --photos N   photos the set is made of (default 12; 4 PNGs each, plus the PNGs already there)
#
# Installs libspng-dev and libpng-dev with apt-get when missing (needs root).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS=7
BASE=""
SET="${XDG_CACHE_HOME:-$HOME/.cache}/datago/pngset"
PHOTOS=12
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --base) BASE="$2"; shift 2 ;;
        --set) SET="$2"; shift 2 ;;
        --photos) PHOTOS="$2"; shift 2 ;;
        *) echo "usage: $0 [--rounds N] [--base REF] [--set DIR] [--photos N]" >&2; exit 2 ;;
    esac
done

missing=()
[ -f /usr/include/spng.h ] || missing+=(libspng-dev)
[ -f /usr/include/png.h ] || missing+=(libpng-dev)
[ -f /usr/include/libdeflate.h ] || missing+=(libdeflate-dev)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    apt-get install -y "${missing[@]}" >&2
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" "$ROOT/benchmarks/png_set.py" "$SET" --photos "$PHOTOS" > /dev/null

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
CC="${CC:-cc}"
CFLAGS=(-O3) # what the Go build uses (go/transform/transform.go's #cgo CFLAGS)
EXTRA=()
if [ -n "$BASE" ]; then
    mkdir -p "$TMP/base"
    git -C "$ROOT" archive "$BASE" go/transform | tar -x -C "$TMP/base"
    "$CC" "${CFLAGS[@]}" -c -o "$TMP/base.o" -Ddg_png_decode=dg_png_decode_base -Ddg_png_free=dg_png_free_base \
        -Ddg_png_fast=dg_png_fast_base "$TMP/base/go/transform/pngdec.c"
    EXTRA=("-DBENCH_BASE=\"$BASE\"" "$TMP/base.o")
fi
"$CC" "${CFLAGS[@]}" -I"$ROOT/go/transform" -o "$TMP/bench_png" "$ROOT/benchmarks/bench_png.c" \
    "$ROOT/go/transform/pngdec.c" "${EXTRA[@]}" -ldeflate -lspng -lpng -lz

echo "bench_png: $(date -u +%FT%TZ), $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo +dirty)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
ls "$SET"/*.png | "$TMP/bench_png" "$ROUNDS"
