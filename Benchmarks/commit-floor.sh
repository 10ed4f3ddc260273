#!/usr/bin/env bash
# Issue 11: decision + commit on a store that just took an N-person full install (default
# 1,000,000), against its floor measured in the same run, interleaved: two bare durable
# SQLite transactions (Benchmarks/sqlite-floor.c: WAL, synchronous=FULL, the same disk,
# rows of a settlement record's size). ROUNDS rounds (default 5) of floor then product;
# prints each round and the median and range of the ratios at p50 and p99. Asserts nothing.
# The product checkpoints the WAL between decisions, untimed, as kioskd does when a card
# leaves (issue 24 item 4); DECIDE_FLAGS=--no-idle-checkpoint measures the checkpoint inside
# the commit instead.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ROUNDS=${ROUNDS:-5}
ITERATIONS=${ITERATIONS:-1000}
SCRATCH=${SCRATCH:-.build}
swift build -c release ${SWIFT_BUILD_FLAGS:-} --product kiosk-bench --scratch-path "$SCRATCH" >/dev/null
BIN=$(swift build -c release ${SWIFT_BUILD_FLAGS:-} --scratch-path "$SCRATCH" --show-bin-path)/kiosk-bench
DIR=$(mktemp -d "${TMPDIR:-/tmp}/commit-floor.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
cc -O2 -o "$DIR/sqlite-floor" Benchmarks/sqlite-floor.c -lsqlite3
echo "# N=$N rounds=$ROUNDS iterations=$ITERATIONS dir=$DIR $(date -u +%FT%TZ)"
"$BIN" snapshot-gen --persons "$N" --out "$DIR/full.jsonl" --snapshot-id 330782-20261122-01 >/dev/null
"$BIN" snapshot-install --file "$DIR/full.jsonl" --db "$DIR/kiosk.sqlite" --fresh | grep -o 'install_seconds=[0-9.]*\|records=[0-9]*' | tr '\n' ' '; echo
rm -f "$DIR/full.jsonl"
echo "# after the install: store $(du -m "$DIR/kiosk.sqlite" | cut -f1) MB, WAL $(du -m "$DIR/kiosk.sqlite-wal" 2>/dev/null | cut -f1 || echo 0) MB"
p() { sed -n "s/.*$1 .*p50_us=\([0-9.]*\) p99_us=\([0-9.]*\).*/\1 \2/p"; }
ratios50=() ratios99=()
round() {  # label
    f=$("$DIR/sqlite-floor" "$DIR/floor.sqlite" "$ITERATIONS" 640 | p two_durable_transactions)
    s=$("$BIN" decide ${DECIDE_FLAGS:-} --db "$DIR/kiosk.sqlite" --iterations "$ITERATIONS" --persons "$N" | p decide_commit)
    read -r f50 f99 <<<"$f"; read -r s50 s99 <<<"$s"
    r50=$(echo "scale=2; $s50 / $f50" | bc); r99=$(echo "scale=2; $s99 / $f99" | bc)
    echo "$1: floor p50 ${f50} us p99 ${f99} us | decide+commit p50 ${s50} us p99 ${s99} us | ratio p50 $r50 p99 $r99 | WAL $(du -m "$DIR/kiosk.sqlite-wal" 2>/dev/null | cut -f1) MB"
}
for r in $(seq "$ROUNDS"); do
    f=$("$DIR/sqlite-floor" "$DIR/floor.sqlite" "$ITERATIONS" 640 | p two_durable_transactions)
    s=$("$BIN" decide ${DECIDE_FLAGS:-} --db "$DIR/kiosk.sqlite" --iterations "$ITERATIONS" --persons "$N" | p decide_commit)
    read -r f50 f99 <<<"$f"; read -r s50 s99 <<<"$s"
    r50=$(echo "scale=2; $s50 / $f50" | bc); r99=$(echo "scale=2; $s99 / $f99" | bc)
    ratios50+=("$r50"); ratios99+=("$r99")
    echo "round $r: floor p50 ${f50} us p99 ${f99} us | decide+commit p50 ${s50} us p99 ${s99} us | ratio p50 $r50 p99 $r99 | WAL $(du -m "$DIR/kiosk.sqlite-wal" 2>/dev/null | cut -f1) MB"
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "median %s (range %s–%s)", a[int((NR+1)/2)], a[1], a[NR]}'; }
echo "ratio_p50 $(stats "${ratios50[@]}")"
echo "ratio_p99 $(stats "${ratios99[@]}")"
# Diagnosis: the same after the WAL is checkpointed and truncated by hand.
sqlite3 "$DIR/kiosk.sqlite" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
round "after a manual wal_checkpoint(TRUNCATE)"
# Diagnosis (issue 24 item 4): the pages each of the two transactions writes (WAL frames of one
# step, the WAL truncated before it), and the system calls per decision + commit (strace -c).
"$BIN" decide ${DECIDE_FLAGS:-} --db "$DIR/kiosk.sqlite" --iterations 1 --persons "$N" --count-pages 200 | grep 'decide pages'
if command -v strace >/dev/null; then
    granted=$(strace -f -c -o "$DIR/strace.txt" "$BIN" decide ${DECIDE_FLAGS:-} --db "$DIR/kiosk.sqlite" --iterations 1000 --persons "$N" | sed -n 's/.*ledger_begin_commit n=\([0-9]*\).*/\1/p')
    awk -v g="$granted" '$NF ~ /^(fdatasync|fsync|pwrite64|pread64|write|read|lseek|fcntl|futex)$/ { calls = ($4 ~ /^[0-9]+$/) ? $4 : $3; printf "strace per decision + commit (%d granted of 1,000): %s %.1f\n", g, $NF, calls / g }' "$DIR/strace.txt"
fi
