#!/usr/bin/env bash
# The hardening report, in one run (each section's exit code and the total time are printed),
# after building this checkout's libdatago.so (section 0):
#   1. fuzzing: executions and findings per fuzz target (scripts/fuzz.sh --time ${FUZZ_TIME:-30s});
#   2. memory: the RSS curve over ${SAMPLES:-100000} samples (benchmarks/hardening_memory.py);
#   3. HTTP faults: how long each takes to surface (benchmarks/hardening_http.py);
#   4. the server's answers to the abuse cases (benchmarks/hardening_server.py).
# A section whose script is not in the checkout prints "missing". The report goes on after a
# failing section; the script exits 1 when any section failed (or is missing), else 0.
#
#   scripts/hardening_report.sh            FUZZ_TIME=2m SAMPLES=20000 scripts/hardening_report.sh
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
start=$(date +%s)
status=0
summary=()

# section NAME COMMAND...: runs COMMAND under a heading, records its exit code and time
section() {
    local name=$1
    shift
    local t0 rc
    t0=$(date +%s)
    printf '\n==== %s\n$ %s\n' "$name" "$*"
    "$@"
    rc=$?
    printf -- '---- %s: exit %d (%ds)\n' "$name" "$rc" "$(($(date +%s) - t0))"
    summary+=("$(printf '%-34s exit %-3d %5ds' "$name" "$rc" "$(($(date +%s) - t0))")")
    [ "$rc" -eq 0 ] || status=1
}

# optional NAME SCRIPT ARGS...: section for a Python benchmark that another change may not have added yet
optional() {
    local name=$1 script=$2
    shift 2
    if [ -f "$script" ]; then
        section "$name" "$PYTHON" "$script" "$@"
    else
        printf '\n==== %s\n%s: missing\n' "$name" "$script"
        summary+=("$(printf '%-34s missing (%s)' "$name" "$script")")
        status=1
    fi
}

# the Python sections load this checkout's library: build it (a no-op for go when it is up to date)
build_lib() {
    go build -buildmode=c-shared -o python/datago/libdatago.so ./go/capi &&
        cp go/capi/datago.h python/datago/datago.h && rm -f python/datago/libdatago.h
}
section "0. build libdatago.so" build_lib
section "1. fuzzing (${FUZZ_TIME:-30s} per target)" scripts/fuzz.sh --time "${FUZZ_TIME:-30s}"
optional "2. RSS over ${SAMPLES:-100000} samples" benchmarks/hardening_memory.py --samples "${SAMPLES:-100000}"
optional "3. HTTP faults: time to surface" benchmarks/hardening_http.py
optional "4. server: abuse cases" benchmarks/hardening_server.py

printf '\n==== summary\n'
printf '%s\n' "${summary[@]}"
echo "total: $(($(date +%s) - start))s; exit $status"
exit $status
