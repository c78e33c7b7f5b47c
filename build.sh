#!/usr/bin/env bash
# datago's one entry point. On a fresh Debian/Ubuntu machine with Go and Python:
#   ./build.sh          install what is missing, build libdatago.so + the CLI, install the package
#   ./build.sh demo     the above, then the demo: real photos through the Go core into Python
#   ./build.sh test     the above, then every check: gofmt, go vet, go test -race, ruff, pytest
#   ./build.sh bench    the above, then the benchmark (datago vs Photoroom's datago, a DataLoader + PIL,
#                       the libjpeg-turbo decode limit; benchmarks/bench_anchor.py, options after `bench`)
#   ./build.sh wheel    only the self-contained wheel into dist/ (scripts/build_wheel.sh; no pip install -e)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
PYTHON=${PYTHON:-python3}

log() { printf '\n== %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

setup() {
    command -v go >/dev/null || { echo "Go is required (https://go.dev/dl/)" >&2; exit 1; }
    # libvips for the core; Debian's wallpaper packages are the real photographs of tests and demo
    apt_install libvips-dev libjpeg-dev libdeflate-dev pkg-config gcc mate-backgrounds lomiri-wallpapers-20.04
    log "go build libdatago.so and the CLI"
    go build -buildmode=c-shared -o python/datago/libdatago.so ./go/capi
    rm -f python/datago/libdatago.h
    cp go/capi/datago.h python/datago/datago.h
    go build -o bin/datago-bench ./cmd/datago-bench
    # (re)install when a dependency is missing or `datago` resolves to another checkout
    if [ "$("$PYTHON" -c "import datago, pytest, ruff, sqlalchemy, fastapi, boto3, moto.server, os; print(os.path.dirname(datago.__file__))" 2>/dev/null)" != "$ROOT/python/datago" ]; then
        log "pip install -e .[test,engine]"
        # the distribution is named datago-vips; an install under the old name `datago` (or Photoroom's
        # package, whose import name is the same) would shadow this checkout
        "$PYTHON" -m pip uninstall -y -q datago >/dev/null 2>&1 || true
        "$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test,engine]"
    fi
}

run_tests() {
    log "gofmt"
    local unformatted
    unformatted=$(gofmt -l go cmd)
    if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted" >&2; exit 1; fi
    log "go vet"
    go vet ./...
    log "go test -race"
    go test -race -count=1 ./...
    log "fuzz (ASan, a few seconds per target)" && scripts/fuzz.sh --ci
    log "ruff"
    "$PYTHON" -m ruff check python tests benchmarks examples
    log "pytest"
    "$PYTHON" -m pytest -q tests "$@"
}

if [ "${1:-}" = wheel ]; then
    apt_install libvips-dev libjpeg-dev libdeflate-dev pkg-config
    exec scripts/build_wheel.sh
fi
setup
case "${1:-}" in
    "") ;;
    demo) shift; "$PYTHON" benchmarks/demo.py "$@" ;;
    test) shift; run_tests "$@" ;;
    bench) shift; "$PYTHON" benchmarks/bench_anchor.py "$@" ;;
    *) echo "usage: ./build.sh [demo|test|bench|wheel]" >&2; exit 2 ;;
esac
