#!/usr/bin/env bash
# Tap to screen (issue 24 item 3), at rest: a release kioskd (hospital, the vector device and
# snapshot) with its page in headless Chromium, and card …0017 with a real card's timing
# inserted by kiosk-bench. Per tap, two segments, each as the product's ADDED milliseconds
# over the card's own time (what the timed card spent answering): the card inserted → the
# pre-settlement on the page; 确认 posted with the screen's session → the result on the page
# (the card written, the ledger's two transactions, the slip printed to a file, the SSE
# stream, the page's render). The page stamps each state it shows (app.js `stamp`).
#   tap-to-screen.sh [TAPS]     TIMINGS="fast slow" by default; "none" measures without a card's delays
#   LOAD=install                the taps run while `kioskctl snapshot install` puts a full of
#                               PERSONS (default 1,000,000) synthetic persons plus the vectors'
#                               into the same store (kiosk-bench snapshot-gen --extra)
# Prints figures; asserts nothing. Not yet: the queue drain and the sync round under load
# (docs/benchmarks.md says what is open).
set -euo pipefail
source "$(dirname "$0")/common.sh"
TAPS=${1:-20}
TIMINGS=${TIMINGS:-fast slow}
PORT=${PORT:-8097}
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
build kioskd kioskctl kiosk-bench
scratch tap-to-screen
echo "# taps=$TAPS timings=$TIMINGS load=${LOAD:-none} $(date -u +%FT%TZ) $(git rev-parse --short HEAD)"
if [ "${LOAD:-}" = install ]; then
    "$BIN/kiosk-bench" snapshot-gen --persons "${PERSONS:-1000000}" --out "$DIR/big.jsonl" --snapshot-id 330782-20261122-05 \
        --issued-at 2026-11-22T02:10:00Z --extra Provisioning/demo/snapshot-small.jsonl
fi
for t in $TIMINGS; do
    card_device "$DIR/state-$t"
    "$BIN/kioskd" --state-dir "$DIR/state-$t" --port "$PORT" --reader "Virtual PCD 00 00" --no-sync --no-upload >"$DIR/kioskd-$t.log" 2>&1 &
    K=$!
    at_exit "kill $K"
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
    label="at_rest"
    if [ "${LOAD:-}" = install ]; then
        label="during_install"
        start=$(date +%s.%N)
        echo "install starts at $start"
        ( "$BIN/kioskctl" snapshot install --state-dir "$DIR/state-$t" "$DIR/big.jsonl" >"$DIR/install-$t.log" 2>&1; echo $? >"$DIR/install-$t.rc" ) &
        I=$!
        sleep 3   # the install under way
    fi
    "$BIN/kiosk-bench" tap-to-screen --state-dir "$DIR/state-$t" --port "$PORT" --timing "$t" --taps "$TAPS" --label "$label timing=$t" ${VERBOSE:+--verbose}
    if [ "${LOAD:-}" = install ]; then
        [ -f "$DIR/install-$t.rc" ] && echo "WARNING: the install ended before the last tap: some taps were at rest"
        wait "$I"
        echo "install ended by $(date +%s.%N) (the rc file's time: $(stat -c %.3Y "$DIR/install-$t.rc"))"
        echo "install: exit $(cat "$DIR/install-$t.rc"), $(echo "$(date +%s.%N) - $start" | bc | cut -c1-6) s; $(cat "$DIR/install-$t.log")"
    fi
    kill "$K"; wait "$K" 2>/dev/null || true
done
