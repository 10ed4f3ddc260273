#!/usr/bin/env bash
# Issue 9: time from a roster change reaching the hub (a card reported lost, POSTed) to the
# kiosk holding the snapshot that refuses that card, with the real binaries on loopback:
# settlement-hub, hub-publisher run (every INTERVAL s), kioskd long-polling. The floor,
# measured in the same run and interleaved: the same kiosk receiving a signed delta put on
# the hub's shelf directly (no publisher), i.e. the sync path alone (long poll, download,
# install). Prints figures; asserts
# nothing. Usage: bash Benchmarks/roster-to-refusal.sh [ROUNDS] (debug build by default;
# CONFIG=release for a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
INTERVAL=${INTERVAL:-1}
CONFIG=${CONFIG:-debug}
swift build -c "$CONFIG" >/dev/null
BIN=$(swift build -c "$CONFIG" --show-bin-path)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/roster-to-refusal.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
HUBPORT=$((30000 + RANDOM % 5000)); KPORT=$((35000 + RANDOM % 5000))
SNAPSHOT=Provisioning/demo/snapshot-small.jsonl
AUTH_PUB=oYIOYJP8glBE21IWS59YdxSMi796YEYlgjPf3cEJoaU=
( umask 077; echo "pCbtCCxCT0qB5zHJODXniuUIoe+FaGUYpApux+O5Z2w=" >"$DIR/authority.key" )   # TEST KEY
now_ms() { date +%s%3N; }
echo "# rounds=$ROUNDS publisher_interval=${INTERVAL}s build=$CONFIG $(date -u +%FT%TZ)"

"$BIN/kiosk-bench" roster-change --change-id RC-0 --out "$DIR/rc0.jsonl" --from-snapshot "$SNAPSHOT" >/dev/null
"$BIN/hub-publisher" roster-import --db "$DIR/hub.sqlite" --archive "$DIR/archive" --roster-key "330782-roster-test=$AUTH_PUB,330782" "$DIR/rc0.jsonl" >/dev/null
"$BIN/hub-publisher" publish --db "$DIR/hub.sqlite" --archive "$DIR/archive" --roster-key "330782-roster-test=$AUTH_PUB,330782" --region 330782 --authority-key-file "$DIR/authority.key" --authority-key-id 330782-auth-test --full >/dev/null
"$BIN/settlement-hub" serve --db "$DIR/hub.sqlite" --port "$HUBPORT" --snapshot "$SNAPSHOT" --roster-key "330782-roster-test=$AUTH_PUB,330782" \
    >"$DIR/hub.log" 2>&1 & PIDS+=($!)
"$BIN/kioskctl" provision --state-dir "$DIR/kiosk" --device-id KSK-TEST-0001 --institution 330782-H01 --profile hospital \
    --authority-key "330782-auth-test=$AUTH_PUB" --hub-url "http://127.0.0.1:$HUBPORT" --region 330782 --printer "file:$DIR/receipts/" \
    --device-key-seed x5ltRC+avHN24CoyFoUz5aWKCtIuAPrNcCW5jVKMTqU= >/dev/null
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HUBPORT/v1/health" >/dev/null && break; sleep 0.1; done
"$BIN/kioskd" --state-dir "$DIR/kiosk" --port "$KPORT" --no-upload >"$DIR/kioskd.log" 2>&1 & PIDS+=($!)
snapshot() { curl -sf "http://127.0.0.1:$KPORT/healthz" | sed -n 's/.*"snapshot" *: *"\([^"]*\)".*/\1/p'; }
wait_for_new() {  # $1: the snapshot the kiosk held; prints ms until it holds another
    local t0=$1 was=$2
    for _ in $(seq 3000); do
        local s; s=$(snapshot || true)
        if [ -n "$s" ] && [ "$s" != "$was" ]; then echo $(( $(now_ms) - t0 )); return; fi
        sleep 0.01
    done
    echo timeout
}
for _ in $(seq 300); do [ -n "$(snapshot || true)" ] && break; sleep 0.1; done
"$BIN/hub-publisher" run --db "$DIR/hub.sqlite" --archive "$DIR/archive" --roster-key "330782-roster-test=$AUTH_PUB,330782" --region 330782 --authority-key-file "$DIR/authority.key" \
    --authority-key-id 330782-auth-test --interval "$INTERVAL" >"$DIR/publisher.log" 2>&1 & PIDS+=($!)

ROSTER=(); FLOOR=()
for i in $(seq "$ROUNDS"); do
    # Floor: a signed delta put on the hub's shelf directly (no publisher); the long poll brings it.
    sleep 1.2   # ids carry the second: one publication a second
    was=$(snapshot)
    id="330782-$(TZ=Asia/Shanghai date +%Y%m%d-%H%M%S)"
    "$BIN/kiosk-bench" snapshot-gen --persons 10 --delta-of "$was" --changes 1 --snapshot-id "$id" \
        --issued-at "$(date -u +%FT%TZ)" --out "$DIR/f$i.jsonl" >/dev/null
    t0=$(now_ms)
    "$BIN/settlement-hub" publish --db "$DIR/hub.sqlite" "$DIR/f$i.jsonl" >/dev/null
    FLOOR+=("$(wait_for_new "$t0" "$was")")
    # The measure: the card reported lost, POSTed to the hub; the publisher and the long poll carry it.
    sleep 1.2
    was=$(snapshot)
    # A card of the vectors' person …0017 reported lost; a new card each round, so each round is a change.
    "$BIN/kiosk-bench" roster-change --change-id "RC-$i" --out "$DIR/rc$i.jsonl" --card "$(printf '33078200001%05d' "$i")" \
        --person-ref 997bb21c2fd71da3a74ad22ada8a3d3e --status lost >/dev/null
    t0=$(now_ms)
    curl -sf -XPOST --data-binary "@$DIR/rc$i.jsonl" "http://127.0.0.1:$HUBPORT/v1/regions/330782/roster-changes" >/dev/null
    ROSTER+=("$(wait_for_new "$t0" "$was")")
done
echo "roster_to_refusal_ms ${ROSTER[*]}"
echo "floor_published_to_installed_ms ${FLOOR[*]}"
