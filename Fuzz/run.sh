#!/usr/bin/env bash
# Fuzz/run.sh [seconds-per-target] [target…]
#
# Builds bk-fuzz with libFuzzer and AddressSanitizer into .build-fuzz, then runs every
# target (or those named) for the given number of seconds (default 20) on a scratch copy
# of its corpus in Fuzz/corpus/<target>/: new inputs never land in the repository. Fails
# when any target crashes, trips a property check, times out or runs out of memory; the
# input that did it is kept in .build-fuzz/artifacts/ and printed. One summary line per
# target (targets run as many at a time as there are cores). Fuzz/README.md has the longer run and how to turn a crash into a test.
set -euo pipefail
cd "$(dirname "$0")/.."

PER_TARGET=${1:-20}
shift || true
ALL=(tlv holder usage certificate snapshot batch bill escpos)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

SCRATCH=.build-fuzz
# No index store and less debug information (line tables for Swift, none for the C of
# BoringSSL and friends): the same binary to fuzz, less to compile and link.
FLAGS=(--scratch-path "$SCRATCH" --product bk-fuzz --disable-index-store
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -gline-tables-only -Xcc -g0)
mkdir -p "$SCRATCH"
build_start=$(date +%s)
if ! swift build "${FLAGS[@]}" >"$SCRATCH/build.log" 2>&1; then
    tail -40 "$SCRATCH/build.log" >&2
    echo "fuzz: build failed (log: $SCRATCH/build.log)" >&2
    exit 1
fi
BIN="$(swift build "${FLAGS[@]}" --show-bin-path)/bk-fuzz"
echo "fuzz: built $BIN in $(( $(date +%s) - build_start )) s"

ARTIFACTS="$SCRATCH/artifacts"
mkdir -p "$ARTIFACTS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bk-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}"

# One target: its summary line into $WORK/<target>.summary, its status into $WORK/<target>.rc.
run_target() {
    local t=$1 log="$WORK/$1.log" rc=0
    if [ ! -d "Fuzz/corpus/$t" ]; then
        echo "fuzz $t: FAILED, no corpus Fuzz/corpus/$t" >"$WORK/$t.summary"; echo 1 >"$WORK/$t.rc"; return
    fi
    mkdir -p "$WORK/$t"
    cp -R "Fuzz/corpus/$t/." "$WORK/$t/"
    local seeds; seeds=$(find "$WORK/$t" -type f | wc -l)
    "$BIN" "$t" -max_total_time="$PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t-" "$WORK/$t" >"$log" 2>&1 || rc=$?
    local runs rate cov corpus
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
    corpus=$(find "$WORK/$t" -type f | wc -l)
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $t: ok, ${PER_TARGET} s, ${runs:-?} runs (${rate:-?}/s), ${cov:-cov: ?}, corpus $seeds -> $corpus" >"$WORK/$t.summary"
    else
        cp "$log" "$ARTIFACTS/$t.log"
        { echo "fuzz $t: FAILED (exit $rc) after ${runs:-?} runs; log $ARTIFACTS/$t.log"
          grep -E 'ERROR: |Fatal error|property failed|SUMMARY|Test unit written to' "$log" | head -8 || true; } >"$WORK/$t.summary"
    fi
    echo "$rc" >"$WORK/$t.rc"
}

# As many targets at a time as there are cores (libFuzzer runs one thread), at most 4.
JOBS=$(nproc 2>/dev/null || echo 1)
[ "$JOBS" -le 4 ] || JOBS=4
running=0
for t in "${TARGETS[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then wait -n || true; running=$((running - 1)); fi
    run_target "$t" &
    running=$((running + 1))
done
wait

failed=()
for t in "${TARGETS[@]}"; do
    if [ "$(cat "$WORK/$t.rc" 2>/dev/null || echo 1)" = 0 ]; then
        cat "$WORK/$t.summary"
    else
        cat "$WORK/$t.summary" >&2 2>/dev/null || echo "fuzz $t: FAILED (no result)" >&2
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]} (reproduce: $BIN <target> <artifact>)" >&2
    exit 1
fi
echo "fuzz: all ${#TARGETS[@]} targets ok"
