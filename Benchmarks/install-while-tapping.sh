#!/usr/bin/env bash
# Issue 9: a full snapshot of N persons (default 1,000,000) installed into a store that
# already holds one, while taps (the store's part of a card session: a decision's read and a
# commit's write) go on. Prints tap latency at rest before, during the install and at rest
# after (the floor, measured in the same run), and the ratios. Asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
SCRATCH=${SCRATCH:-.build}
swift build -c release --product kiosk-bench --scratch-path "$SCRATCH" >/dev/null
BIN=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/kiosk-bench
DIR=$(mktemp -d "${TMPDIR:-/tmp}/install-while-tapping.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
echo "# N=$N dir=$DIR $(date -u +%FT%TZ)"
"$BIN" snapshot-gen --persons "$N" --out "$DIR/base.jsonl" --snapshot-id 330782-20261122-01
"$BIN" snapshot-gen --persons "$N" --out "$DIR/next.jsonl" --snapshot-id 330782-20261122-02 --issued-at 2026-11-22T02:30:00Z
"$BIN" install-while-tapping --base "$DIR/base.jsonl" --file "$DIR/next.jsonl" --db "$DIR/kiosk.sqlite" --persons "$N"
