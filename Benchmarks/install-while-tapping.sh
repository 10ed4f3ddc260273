#!/usr/bin/env bash
# Issue 9: a full snapshot of N persons (default 1,000,000) installed into a store that
# already holds one, while taps (the store's part of a card session: a decision's read and a
# commit's write) go on. Prints tap latency at rest before, during the install and at rest
# after (the floor, measured in the same run), and the ratios. Asserts nothing.
#   install-while-tapping.sh [N]          the install from a local file
#   install-while-tapping.sh [N] --sync   the whole sync round: a real settlement-hub on
#                                         loopback serves the full, the kiosk's sync downloads
#                                         (signed requests, checked bytes) and installs it
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
MODE=${2:-}
SCRATCH=${SCRATCH:-.build}
for p in kiosk-bench settlement-hub; do swift build -c release --product "$p" --scratch-path "$SCRATCH" >/dev/null; done
BINDIR=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
BIN=$BINDIR/kiosk-bench
DIR=$(mktemp -d "${TMPDIR:-/tmp}/install-while-tapping.XXXXXX")
HUB_PID=
trap '[ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null; rm -rf "$DIR"' EXIT
echo "# N=$N mode=${MODE:-file} dir=$DIR $(date -u +%FT%TZ)"
"$BIN" snapshot-gen --persons "$N" --out "$DIR/base.jsonl" --snapshot-id 330782-20261122-01
"$BIN" snapshot-gen --persons "$N" --out "$DIR/next.jsonl" --snapshot-id 330782-20261122-02 --issued-at 2026-11-22T02:30:00Z
if [ "$MODE" = --sync ]; then
    "$BINDIR/settlement-hub" publish --db "$DIR/hub.sqlite" "$DIR/base.jsonl" >/dev/null
    "$BINDIR/settlement-hub" publish --db "$DIR/hub.sqlite" "$DIR/next.jsonl" >/dev/null
    "$BINDIR/settlement-hub" serve --db "$DIR/hub.sqlite" --port 0 --device "$("$BIN" bench-device-key)" >"$DIR/hub.log" 2>&1 &
    HUB_PID=$!
    for _ in $(seq 100); do grep -q "listening" "$DIR/hub.log" 2>/dev/null && break; sleep 0.1; done
    URL=$(grep -o 'http://[0-9.:]*' "$DIR/hub.log" | head -1)
    "$BIN" install-while-tapping --base "$DIR/base.jsonl" --file 330782-20261122-02 --hub "$URL" --db "$DIR/kiosk.sqlite" --persons "$N"
else
    "$BIN" install-while-tapping --base "$DIR/base.jsonl" --file "$DIR/next.jsonl" --db "$DIR/kiosk.sqlite" --persons "$N"
fi
