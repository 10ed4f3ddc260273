#!/usr/bin/env bash
# Snapshot benchmark: generate a signed full snapshot of N persons (default 1,000,000)
# and a 10,000-change delta, install the full into a fresh store and the delta on top,
# then time the software side of decisions on that store. Prints figures; asserts nothing.
# Budgets (docs DESIGN.md): full install of 1M ≤ 20 s and ≤ 150 MB peak; delta of 10,000
# ≤ 1 s; decision p99 ≤ 5 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
CHANGES=${CHANGES:-10000}
ITERATIONS=${ITERATIONS:-2000}
swift build -c release --product kiosk-bench >/dev/null
BIN=$(swift build -c release --show-bin-path)/kiosk-bench
DIR=$(mktemp -d "${TMPDIR:-/tmp}/snapshot-bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
FULL_ID=330782-20261122-01

echo "# N=$N changes=$CHANGES iterations=$ITERATIONS dir=$DIR"
"$BIN" snapshot-gen --persons "$N" --out "$DIR/full.jsonl" --snapshot-id "$FULL_ID"
"$BIN" snapshot-gen --persons "$N" --out "$DIR/delta.jsonl" --delta-of "$FULL_ID" --changes "$CHANGES"
echo "# install full (fresh store)"
"$BIN" snapshot-install --file "$DIR/full.jsonl" --db "$DIR/kiosk.sqlite" --fresh
echo "# install delta (same store)"
"$BIN" snapshot-install --file "$DIR/delta.jsonl" --db "$DIR/kiosk.sqlite"
echo "# decide"
"$BIN" decide --db "$DIR/kiosk.sqlite" --iterations "$ITERATIONS" --persons "$N"
