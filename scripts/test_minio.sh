#!/usr/bin/env bash
# The S3 test suite against MinIO (instead of moto_server): builds MinIO once with `go install`
# (about 20 minutes on 2 cores; cached in the Go bin folder), starts it on a free 127.0.0.1 port
# with a temporary data folder, runs the Go and Python S3 tests against it, and stops it.
# Needs the library built (go build -buildmode=c-shared ..., or ./build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
GOBIN_DIR="$(go env GOBIN)"
[ -n "$GOBIN_DIR" ] || GOBIN_DIR="$(go env GOPATH)/bin"
MINIO="$GOBIN_DIR/minio"
if [ ! -x "$MINIO" ]; then
    echo "== go install github.com/minio/minio@latest (once; cached as $MINIO)"
    GOFLAGS=-mod=mod go install github.com/minio/minio@latest
fi
PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
DATA="$(mktemp -d /tmp/datago-minio.XXXXXX)"
export MINIO_ROOT_USER=datago-test MINIO_ROOT_PASSWORD=datago-test-secret MINIO_BROWSER=off
"$MINIO" server --quiet --address "127.0.0.1:$PORT" "$DATA" >"$DATA.log" 2>&1 &
MINIO_PID=$!
cleanup() { kill "$MINIO_PID" 2>/dev/null || true; wait "$MINIO_PID" 2>/dev/null || true; rm -rf "$DATA" "$DATA.log"; }
trap cleanup EXIT
for _ in $(seq 1 300); do
    if curl -fs "http://127.0.0.1:$PORT/minio/health/live" >/dev/null; then break; fi
    if ! kill -0 "$MINIO_PID" 2>/dev/null; then cat "$DATA.log" >&2; echo "minio did not start" >&2; exit 1; fi
    sleep 0.2
done
export DATAGO_TEST_S3_ENDPOINT="http://127.0.0.1:$PORT"
export DATAGO_TEST_S3_ACCESS_KEY="$MINIO_ROOT_USER" DATAGO_TEST_S3_SECRET_KEY="$MINIO_ROOT_PASSWORD"
echo "== MinIO on $DATAGO_TEST_S3_ENDPOINT"
go test -count=1 -run 'S3' ./go/source/
PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pytest -q tests/test_s3.py tests/engine/test_s3_datasource.py
echo "== S3 tests passed against MinIO"
