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
#   LOAD=sync                   the whole load at once: a settlement-hub on loopback holds that
#                               full on its shelf, and kioskd's own sync downloads and installs
#                               it (a sync round and a full install) while its uploader drains
#                               RECORDS (default 5,000) queued records to the same hub
#                               (kiosk-bench queue-alerts); a sampler notes when the queue is
#                               empty and when the new snapshot is in
# Prints figures; asserts nothing.
set -euo pipefail
source "$(dirname "$0")/common.sh"
TAPS=${1:-20}
TIMINGS=${TIMINGS:-fast slow}
PORT=${PORT:-8097}
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
build kioskd kioskctl kiosk-bench settlement-hub
scratch tap-to-screen
echo "# taps=$TAPS timings=$TIMINGS load=${LOAD:-none} $(date -u +%FT%TZ) $(git rev-parse --short HEAD)"
if [ "${LOAD:-}" = install ] || [ "${LOAD:-}" = sync ]; then
    "$BIN/kiosk-bench" snapshot-gen --persons "${PERSONS:-1000000}" --out "$DIR/big.jsonl" --snapshot-id 330782-20261122-05 \
        --issued-at 2026-11-22T02:10:00Z --extra Provisioning/demo/snapshot-small.jsonl
fi
# LOAD=sync: a hub with the full on its shelf and the device registered in its region (the
# demo snapshot's roster); the kiosk pointed at it, with RECORDS queued records.
hub_for_sync() {  # timing
    rm -f "$DIR/hub-$1.sqlite"*
    "$BIN/settlement-hub" publish --db "$DIR/hub-$1.sqlite" "$DIR/big.jsonl" >"$DIR/publish-$1.log" 2>&1
    "$BIN/settlement-hub" serve --db "$DIR/hub-$1.sqlite" --port 0 --snapshot Provisioning/demo/snapshot-small.jsonl >"$DIR/hub-$1.log" 2>&1 &
    HUB=$!
    at_exit "kill $HUB"
    for _ in $(seq 600); do grep -q "listening on http" "$DIR/hub-$1.log" && break; sleep 0.1; done
    local url
    url=$(grep -o 'http://[0-9.:]*' "$DIR/hub-$1.log" | head -1)
    python3 - "$DIR/state-$1/device.json" "$url" <<'PY'
import json, sys
p, url = sys.argv[1], sys.argv[2]
d = json.load(open(p)); assert "hub_url" in d, "device.json has no hub_url"; d["hub_url"] = url
json.dump(d, open(p, "w"), indent=2)
PY
    "$BIN/kiosk-bench" queue-alerts --db "$DIR/state-$1/kiosk.sqlite" --device-id KSK-TEST-0001 --count "${RECORDS:-5000}"
}
# Every 0.25 s: seconds since START, records still queued, the installed snapshot.
sample_load() {  # timing start
    while true; do
        echo "$(echo "$(date +%s.%N) - $2" | bc) $(sqlite3 -cmd '.timeout 2000' "$DIR/state-$1/kiosk.sqlite" \
            "SELECT (SELECT count(*) FROM record WHERE status = 'queued'), (SELECT snapshot_id FROM snapshot_meta)" 2>/dev/null | tr '|' ' ')"
        sleep 0.25
    done >"$DIR/load-$1.txt"
}
load_report() {  # timing start
    awk -v total="${RECORDS:-5000}" '
        NF == 3 && !d && $2 == 0 { d = $1 }
        NF == 3 && !q { q = $2 }
        NF == 3 && !s && $3 == "330782-20261122-05" { s = $1 }
        END { printf "load: queue of %d (%d at the first sample) drained at %s s; the synced full installed at %s s (seconds after kioskd was up)\n", total, q, d ? d : "never", s ? s : "never" }' "$DIR/load-$1.txt"
    grep -c . "$DIR/load-$1.txt" | sed 's/^/load: samples /'
    echo "load: the kiosk's records: $(sqlite3 "$DIR/state-$1/kiosk.sqlite" "SELECT group_concat(status || '=' || n, ' ') FROM (SELECT status, count(*) n FROM record GROUP BY status)")"
    grep -iE "sync|snapshot|upload|drain" "$DIR/kioskd-$1.log" | tail -6 | cut -c1-200
}
for t in $TIMINGS; do
    card_device "$DIR/state-$t"
    OFF=(--no-sync --no-upload)
    if [ "${LOAD:-}" = sync ]; then
        OFF=()
        hub_for_sync "$t"
    fi
    "$BIN/kioskd" --state-dir "$DIR/state-$t" --port "$PORT" --reader "Virtual PCD 00 00" "${OFF[@]}" >"$DIR/kioskd-$t.log" 2>&1 &
    K=$!
    at_exit "kill $K"
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
    label="at_rest"
    if [ "${LOAD:-}" = sync ]; then
        label="during_sync_and_drain"
        start=$(date +%s.%N)
        sample_load "$t" "$start" &
        S=$!
        at_exit "kill $S"
    fi
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
    if [ "${LOAD:-}" = sync ]; then
        # The install's end, even after the last tap (at most 300 s more).
        for _ in $(seq 1200); do grep -q "330782-20261122-05" "$DIR/load-$t.txt" 2>/dev/null && break; sleep 0.25; done
        echo "last tap ended at $(echo "$(date +%s.%N) - $start" | bc) s or earlier"
        sleep 1; kill "$S" 2>/dev/null || true
        load_report "$t" "$start"
        kill "$HUB"; wait "$HUB" 2>/dev/null || true
    fi
    kill "$K"; wait "$K" 2>/dev/null || true
done
