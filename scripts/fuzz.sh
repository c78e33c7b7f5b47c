#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzX in go/**/fuzz_test.go) for a fixed time under
# AddressSanitizer, one `go test -asan -run '^$' -fuzz '^FuzzX$'` per target (go test fuzzes one
# target at a time), and prints per target: executions, new corpus entries ("interesting", kept in
# the Go build cache, not in the repository) and findings.
#
#   scripts/fuzz.sh [--ci] [--time 60s] [--only FuzzX]
#
#   --ci       a short fixed time per target (FUZZ_CI_TIME, default 8s): CI's smoke run, from the
#              committed seeds alone (a fresh corpus cache: go's baseline pass over the corpus that
#              earlier runs accumulated in $GOCACHE/fuzz would eat the few seconds)
#   --time D   time per target (a go duration: 30s, 5m; default 60s)
#   --only X   only the target X
#
# A finding (a failing input) makes the script exit 1; go test writes the input under the
# package's testdata/fuzz/FuzzX/ and the script prints that path: commit it with the fix (the
# regular `go test` then runs it as a unit test). Committed findings (inputs named by hash) are
# listed at the end: each one passes as a unit test once its fix is in.
#
# ASan: -asan compiles our C (cgo) with -fsanitize=address and checks the Go code's accesses to C
# memory (cmem buffers); libvips, glib and libjpeg are the system's, not instrumented. A package
# with no cgo among its module dependencies (go/config) is pure Go, memory-safe without it: it is
# fuzzed without -asan, which costs ~30x in executions (FUZZ_ASAN=always forces it). Leak
# detection stays at its default (on, at exit, since Go 1.25): set ASAN_OPTIONS=detect_leaks=0 if
# a library's one-time allocations are ever reported.
# FUZZ_PARALLEL sets the workers per target (default: go's, GOMAXPROCS). FUZZ_MINIMIZE_TIME is
# go's -fuzzminimizetime (default 10x: ten runs; go's own default, 60s per new input, would spend
# a short run minimizing instead of fuzzing; a finding is written whether minimized or not).
set -uo pipefail

cd "$(dirname "$0")/.."
per_target=60s
only=""
fresh=0
while [ $# -gt 0 ]; do
    case "$1" in
        --ci) per_target="${FUZZ_CI_TIME:-8s}"; fresh=1; shift ;;
        --time) per_target="${2:?--time needs a duration}"; shift 2 ;;
        --time=*) per_target="${1#--time=}"; shift ;;
        --only) only="${2:?--only needs a target name}"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "usage: scripts/fuzz.sh [--ci] [--time 60s] [--only FuzzX]" >&2; exit 2 ;;
    esac
done

# the targets: "package-dir FuzzName" per line, from the fuzz_test.go files
targets=$(grep -H -o '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' $(find go -name fuzz_test.go | sort) |
    sed -E 's#^(.*)/fuzz_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#')
if [ -n "$only" ]; then
    targets=$(printf '%s\n' "$targets" | awk -v t="$only" '$2 == t')
fi
if [ -z "$targets" ]; then
    echo "fuzz.sh: no fuzz target found${only:+ named $only}" >&2
    exit 2
fi

minimize="${FUZZ_MINIMIZE_TIME:-10x}"
parallel=()
[ -n "${FUZZ_PARALLEL:-}" ] && parallel=(-parallel "$FUZZ_PARALLEL")
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
cache=()
[ "$fresh" = 1 ] && cache=(-args "-test.fuzzcachedir=$log_dir/corpus")
start=$(date +%s)
status=0
total_execs=0
rows=()
echo "fuzz.sh: $(printf '%s\n' "$targets" | wc -l) targets, $per_target each ($(go version | cut -d' ' -f3))"
while read -r dir name; do
    log="$log_dir/$name.log"
    t0=$(date +%s)
    asan=()
    if [ "${FUZZ_ASAN:-auto}" = always ] ||
        [ -n "$(go list -deps -f '{{if and .CgoFiles (not .Standard)}}{{.ImportPath}}{{end}}' "./$dir/")" ]; then
        asan=(-asan)
    fi
    go test "${asan[@]}" -run '^$' -fuzz "^${name}\$" -fuzztime "$per_target" -fuzzminimizetime "$minimize" \
        "${parallel[@]}" "./$dir/" "${cache[@]}" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    # the last progress line: "fuzz: elapsed: 8s, execs: 12345 (1543/sec), new interesting: 3 (total: 12)"
    last=$(grep -E '^fuzz: elapsed: .*execs: [0-9]+' "$log" | tail -n 1)
    execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
    interesting=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
    crasher=$(sed -nE 's#.*Failing input written to (testdata/fuzz/[^ ]+).*#\1#p' "$log" | tail -n 1)
    if [ -z "$crasher" ]; then # a committed seed fails (go names it, as FuzzX/name)
        crasher=$(sed -nE 's#.*failure while testing seed corpus entry: (Fuzz[^ /]+/[^ ]+).*#testdata/fuzz/\1#p' "$log" | tail -n 1)
    fi
    if [ "$rc" -eq 0 ]; then
        result="ok"
    elif [ -z "$crasher" ] && ! grep -q 'ERROR: AddressSanitizer' "$log" &&
        [ "$(grep -A1 -E "^--- FAIL: ${name} " "$log" | sed -n 2p)" = "    context deadline exceeded" ]; then
        # go1.26's fuzzing coordinator can report its own -fuzztime deadline as a failure when a
        # worker is mid-call as it expires (golang/go#75804, fixed in go1.27): no input, no crash
        result="ok (go#75804: the -fuzztime deadline reported as a failure, no input)"
        rc=0
    elif [ -n "$crasher" ]; then
        result="FINDING: $dir/$crasher"
        status=1
    else
        result="FAILED (exit $rc, no input recorded: see the log below)"
        status=1
    fi
    total_execs=$((total_execs + ${execs:-0}))
    rows+=("$(printf '%-22s %-14s %-4s %10s %12s  %4ss  %s' "$name" "$dir" "$([ ${#asan[@]} -gt 0 ] && echo yes || echo no)" \
        "${execs:-?}" "${interesting:-?}" "$secs" "$result")")
    echo "${rows[-1]}"
    if [ -n "$crasher" ] && [ "$rc" -ne 0 ]; then
        # go's fuzzing workers do not pass an ASan report on: run the input again as a unit test,
        # in process, for the assertion or the ASan stack (a kept test binary, so that the stack
        # is symbolized: file and line)
        input=${crasher#testdata/fuzz/}
        echo "re-run: go test ${asan[*]} -run '^${input%%/*}/${input#*/}\$' ./$dir/" >>"$log"
        if go test -c "${asan[@]}" -o "$log_dir/$name.test" "./$dir/" >>"$log" 2>&1; then
            (cd "$dir" && ASAN_OPTIONS="${ASAN_OPTIONS:-symbolize=1}" "$log_dir/$name.test" \
                -test.run "^${input%%/*}/${input#*/}\$" >>"$log" 2>&1)
        fi
    fi
    if [ "$rc" -ne 0 ]; then
        # the failure's own report (the assertion, the ASan stack) without libvips' warnings
        sed -n '/ERROR: AddressSanitizer/,/^SUMMARY: AddressSanitizer/p' "$log" | head -n 40 | sed 's/^/    | /'
        grep -v -e 'VIPS-WARNING' -e '^$' -e '^fuzz: elapsed' "$log" | grep -v -E '^ *#[0-9]+ 0x|^ *(=>)?0x[0-9a-f]+:|^(Shadow|  Addressable|  Partially|  Heap|  Freed|  Stack|  Global|  Poisoned|  Container|  Array|  Intra|  ASan|  Left|  Right)' |
            sed '/ERROR: AddressSanitizer/,/^SUMMARY: AddressSanitizer/d' | tail -n 25 | sed 's/^/    | /'
    fi
done <<<"$targets"

echo
printf '%-22s %-14s %-4s %10s %12s  %5s  %s\n' target package asan execs interesting time result
printf '%s\n' "${rows[@]}"
known=$(git ls-files 'go/*/testdata/fuzz/Fuzz*/*' 2>/dev/null | grep -E '/[0-9a-f]{16}$')
if [ -n "$known" ]; then
    echo "committed findings (each runs as a unit test of its target):"
    printf '  %s\n' $known
fi
if printf '%s\n' "${rows[@]}" | grep -q ' ? .* ok$'; then
    echo "?: no count, the time ran out during go's baseline pass over the corpus (give a longer --time)"
fi
echo "total: ${total_execs} execs in $(($(date +%s) - start))s; exit $status"
exit $status
