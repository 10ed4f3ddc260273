#!/usr/bin/env bash
# Tap to screen (issue 24 item 3), at rest: a release kioskd (hospital, the vector device and
# snapshot) with its page in headless Chromium, and card …0017 with a real card's timing
# inserted by kiosk-bench. Per tap, two segments, each as the product's ADDED milliseconds
# over the card's own time (what the timed card spent answering): the card inserted → the
# pre-settlement on the page; 确认 posted with the screen's session → the result on the page
# (the card written, the ledger's two transactions, the slip printed to a file, the SSE
# stream, the page's render). The page stamps each state it shows (app.js `stamp`).
#   tap-to-screen.sh [TAPS]     TIMINGS="fast slow" by default; "none" measures without a card's delays
# Prints figures; asserts nothing. Not yet: the same under a 1,000,000-person install, a
# queue drain and a sync round (docs/benchmarks.md says what is open).
set -euo pipefail
source "$(dirname "$0")/common.sh"
TAPS=${1:-20}
TIMINGS=${TIMINGS:-fast slow}
PORT=${PORT:-8097}
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
build kioskd kioskctl kiosk-bench
scratch tap-to-screen
echo "# taps=$TAPS timings=$TIMINGS $(date -u +%FT%TZ) $(git rev-parse --short HEAD)"
for t in $TIMINGS; do
    card_device "$DIR/state-$t"
    "$BIN/kioskd" --state-dir "$DIR/state-$t" --port "$PORT" --reader "Virtual PCD 00 00" --no-sync --no-upload >"$DIR/kioskd-$t.log" 2>&1 &
    K=$!
    at_exit "kill $K"
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
    "$BIN/kiosk-bench" tap-to-screen --state-dir "$DIR/state-$t" --port "$PORT" --timing "$t" --taps "$TAPS" --label "at_rest timing=$t"
    kill "$K"; wait "$K" 2>/dev/null || true
done
