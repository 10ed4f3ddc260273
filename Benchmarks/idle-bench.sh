#!/usr/bin/env bash
# Daemon at rest: resident memory and CPU of a release kioskd that is provisioned, has the
# vector snapshot, watches its reader, serves its screen with one SSE client attached and
# has an uploader waiting, but sees no card and no bill. Samples /proc for SECONDS (default
# 60) after a settling pause and prints figures; asserts nothing.
# Budget (DESIGN.md): ≤ 40 MB resident, ~0% CPU (event-driven, no polling loops).
# Resident is split: private anonymous memory (heap, stacks) and PSS (file-backed code
# pages of the binary and the Swift runtime count in RSS whole, in PSS shared out).
# Needs pcscd running (bash Provisioning/start-pcscd.sh). KIOSKD=PATH measures another kioskd
# binary (an earlier build, for a before and after) with this build's kioskctl and floors.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_AT_REST=${1:-60}
PORT=${PORT:-8099}
SCRATCH=${SCRATCH:-.build}
# SWIFT_BUILD_FLAGS=--static-swift-stdlib with SCRATCH=.build-release measures the packages' binaries.
# shellcheck disable=SC2086
for p in kioskd kioskctl rest-floor; do swift build -c release ${SWIFT_BUILD_FLAGS:-} --product "$p" --scratch-path "$SCRATCH" >/dev/null; done
# shellcheck disable=SC2086
BIN=$(swift build -c release ${SWIFT_BUILD_FLAGS:-} --scratch-path "$SCRATCH" --show-bin-path)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/idle-bench.XXXXXX")
PID=
FLOOR=
AFLOOR=
cleanup() { [ -n "$FLOOR" ] && kill "$FLOOR" 2>/dev/null; [ -n "$AFLOOR" ] && kill "$AFLOOR" 2>/dev/null; [ -n "$PID" ] && kill "$PID" 2>/dev/null; [ -n "${CURL:-}" ] && kill "$CURL" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
export BENEFIT_KIOSK_TEST_NOW=2026-11-22T03:00:00Z
"$BIN/kioskctl" provision --state-dir "$DIR/state" --device-id KSK-TEST-0001 --institution 330782-H01 --profile hospital \
    --issuer-key 330782-issuer-test=ccFN/6AgIzeALsTdT7e3Eyw+Wdaz4PSJiYy/wU1agY8= \
    --authority-key 330782-auth-test=oYIOYJP8glBE21IWS59YdxSMi796YEYlgjPf3cEJoaU= \
    --hub-url http://127.0.0.1:9 --printer "file:$DIR/receipts/" --region 330782 >/dev/null
"$BIN/kioskctl" snapshot install --state-dir "$DIR/state" Provisioning/demo/snapshot-small.jsonl >/dev/null
"${KIOSKD:-$BIN/kioskd}" --state-dir "$DIR/state" --port "$PORT" --reader "Virtual PCD 00 00" >"$DIR/kioskd.log" 2>&1 &
PID=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
curl -fsN "http://127.0.0.1:$PORT/events" >/dev/null 2>&1 & CURL=$!
# The floors, in the same run: a process with the same Swift runtime and Foundation, idle;
# and the same with one task of Swift concurrency waiting (libdispatch's workqueue monitor).
"$BIN/rest-floor" >/dev/null & FLOOR=$!
"$BIN/rest-floor" --async >/dev/null & AFLOOR=$!
sleep 5
# Wake-ups: context switches of every thread of a process.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
W0=$(switches "$PID"); F0=$(switches "$FLOOR"); A0=$(switches "$AFLOOR")
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
T0=$(ticks); S0=$(date +%s.%N)
sleep "$SECONDS_AT_REST"
T1=$(ticks); S1=$(date +%s.%N)
W1=$(switches "$PID"); F1=$(switches "$FLOOR"); A1=$(switches "$AFLOOR")
FRSS=$(awk '/^VmRSS/ {print $2}' "/proc/$FLOOR/status")
RSS=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$PID/status")
THREADS=$(awk '/^Threads/ {print $2}' "/proc/$PID/status")
ANON=$(awk '/^RssAnon/ {print $2}' "/proc/$PID/status")
PSS=$(awk '/^Pss:/ {print $2}' "/proc/$PID/smaps_rollup")
awk -v t0="$T0" -v t1="$T1" -v s0="$S0" -v s1="$S1" -v hz="$HZ" -v rss="$RSS" -v hwm="$HWM" -v th="$THREADS" -v anon="$ANON" -v pss="$PSS" 'BEGIN {
    cpu = (t1 - t0) / hz; wall = s1 - s0
    printf "kioskd_at_rest seconds=%.1f cpu_seconds=%.2f cpu_percent=%.3f rss_mb=%.1f peak_rss_mb=%.1f private_anon_mb=%.1f pss_mb=%.1f threads=%d\n", wall, cpu, 100 * cpu / wall, rss / 1024, hwm / 1024, anon / 1024, pss / 1024, th
}'
awk -v w="$((W1 - W0))" -v f="$((F1 - F0))" -v a="$((A1 - A0))" -v rss="$RSS" -v frss="$FRSS" -v secs="$SECONDS_AT_REST" 'BEGIN {
    printf "floor rest-floor rss_mb=%.1f wakeups=%d (with a waiting task: %d) | kioskd rss_mb=%.1f wakeups=%d (%.2f a second) | rss_ratio=%.2f rss_above_floor_mb=%.1f\n", frss / 1024, f, a, rss / 1024, w, w / secs, rss / frss, (rss - frss) / 1024
}'
