#!/usr/bin/env bash
# Issue 9: the publisher at N persons (default 1,000,000). A roster of N persons and cards is
# imported as one signed roster change; a full is published; one card is reported lost and
# the delta is published. The floor, in the same run: writing and signing a snapshot of the
# same N persons with no database (kiosk-bench snapshot-gen). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
SCRATCH=${SCRATCH:-.build}
for p in kiosk-bench hub-publisher; do swift build -c release --product "$p" --scratch-path "$SCRATCH" >/dev/null; done
BIN=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/publish-bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
AUTH_PUB=oYIOYJP8glBE21IWS59YdxSMi796YEYlgjPf3cEJoaU=
( umask 077; echo "pCbtCCxCT0qB5zHJODXniuUIoe+FaGUYpApux+O5Z2w=" >"$DIR/authority.key" )   # TEST KEY
t() { local s; s=$(date +%s.%N); "$@" >/dev/null; echo "$(echo "$(date +%s.%N) - $s" | bc)"; }
echo "# N=$N $(date -u +%FT%TZ)"
FLOOR=$(t "$BIN/kiosk-bench" snapshot-gen --persons "$N" --out "$DIR/full.jsonl")
GEN=$(t "$BIN/kiosk-bench" roster-change --change-id RC-1 --out "$DIR/rc1.jsonl" --from-snapshot "$DIR/full.jsonl")
IMPORT=$(t "$BIN/hub-publisher" roster-import --db "$DIR/hub.sqlite" --archive "$DIR/archive" --roster-key "330782-roster-test=$AUTH_PUB,330782" "$DIR/rc1.jsonl")
FULL=$(t "$BIN/hub-publisher" publish --db "$DIR/hub.sqlite" --archive "$DIR/archive" --roster-key "330782-roster-test=$AUTH_PUB,330782" --region 330782 --authority-key-file "$DIR/authority.key" --authority-key-id 330782-auth-test --full)
sleep 1.1
"$BIN/kiosk-bench" roster-change --change-id RC-2 --out "$DIR/rc2.jsonl" --card 3307829000000007 \
    --person-ref "$(grep -m1 -o '"card_number":"3307829000000007","person_ref":"[0-9a-f]*"' "$DIR/full.jsonl" | sed 's/.*"person_ref":"//;s/"//')" --status lost >/dev/null
"$BIN/hub-publisher" roster-import --db "$DIR/hub.sqlite" --archive "$DIR/archive" --roster-key "330782-roster-test=$AUTH_PUB,330782" "$DIR/rc2.jsonl" >/dev/null
DELTA=$(t "$BIN/hub-publisher" publish --db "$DIR/hub.sqlite" --archive "$DIR/archive" --roster-key "330782-roster-test=$AUTH_PUB,330782" --region 330782 --authority-key-file "$DIR/authority.key" --authority-key-id 330782-auth-test)
echo "floor_snapshot_gen_s=$FLOOR roster_change_gen_s=$GEN roster_import_s=$IMPORT publish_full_s=$FULL publish_delta_s=$DELTA"
echo "ratio_full_vs_floor=$(echo "scale=2; $FULL / $FLOOR" | bc) ratio_delta_vs_floor=$(echo "scale=6; $DELTA / $FLOOR" | bc)"
ls -l "$DIR/hub.sqlite.snapshots/" | tail -n +2 | awk '{print "published " $9 " " $5 " bytes"}'
