#!/usr/bin/env bash
# Issue 21 item 5: a hub process's start-up and memory with a region of PERSONS persons
# (default 1,000,000) in its database, on each engine (ENGINES, default "sqlite postgres"),
# against its own floor: the same hub started on an empty store of the same engine, in the same
# run, interleaved (ROUNDS rounds, default 2). The roster goes in once per engine with
# `hub-publisher roster-import` (through the publisher's archive). Each start: seconds until
# "listening", RSS then, and RSS and records/s after KIOSKS kiosks (default 50) drain RECORDS
# alert records each (default 200). Asserts nothing. Records/s: the first round's (later
# rounds send the same records to the same full store again: duplicates, answered faster).
# LOAD=subsidies: the records are subsidies instead, each naming a card of the region with the
# card's own acknowledgement (the hub looks every card up and verifies it), and the floor is a
# store holding only the 2 × KIOSKS × RECORDS persons those bills are taken from (imported the same way).
set -euo pipefail
source "$(dirname "$0")/common.sh"
PERSONS=${PERSONS:-1000000}
ENGINES=${ENGINES:-sqlite postgres}
ROUNDS=${ROUNDS:-2}
KIOSKS=${KIOSKS:-50}
RECORDS=${RECORDS:-200}
LOAD=${LOAD:-alerts}
case "$LOAD" in alerts) FLOOR=mem_empty ;; subsidies) FLOOR=mem_small ;; *) echo "LOAD is alerts or subsidies" >&2; exit 2 ;; esac
build kiosk-bench settlement-hub hub-publisher
scratch hub-memory
start_postgres
echo "# hub-memory persons=$PERSONS engines=$ENGINES rounds=$ROUNDS load=$LOAD $(date -u +%FT%TZ) $(nproc) cores"
"$BIN/kiosk-bench" hub-load roster --kiosks "$KIOSKS" --out "$DIR/roster.jsonl"
CARD_KEYS=()
if [ "$LOAD" = subsidies ]; then
    CARD_KEYS=(--card-keys)
    "$BIN/kiosk-bench" snapshot-gen --persons $((2 * KIOSKS * RECORDS)) --card-keys --out "$DIR/small.jsonl" --snapshot-id 330782-20261122-01 >/dev/null
    "$BIN/kiosk-bench" hub-load queue --kiosks "$KIOSKS" --records "$RECORDS" --dir "$DIR/queued" --subsidies "$DIR/small.jsonl"
    "$BIN/kiosk-bench" roster-change --change-id RC-MEM-0 --out "$DIR/small-change.jsonl" --from-snapshot "$DIR/small.jsonl" >/dev/null
else
    "$BIN/kiosk-bench" hub-load queue --kiosks "$KIOSKS" --records "$RECORDS" --dir "$DIR/queued"
fi
"$BIN/kiosk-bench" snapshot-gen --persons "$PERSONS" "${CARD_KEYS[@]}" --out "$DIR/population.jsonl" --snapshot-id 330782-20261122-01 >/dev/null
gen=$("$BIN/kiosk-bench" roster-change --change-id RC-MEM-1 --out "$DIR/change.jsonl" --from-snapshot "$DIR/population.jsonl")
KEY=$(echo "$gen" | sed -n 's/.*key_id=\([^ ]*\) public_key=\([^ ]*\).*/\1=\2,330782/p')
rm -f "$DIR/population.jsonl"
storage() {  # $1 engine, $2 name: STORAGE
    if [ "$1" = sqlite ]; then STORAGE=(--db "$DIR/$2.sqlite"); else STORAGE=(--postgres "$PG_URL&search_path=$2" --shelf "$DIR/$2.shelf"); fi
}
for engine in $ENGINES; do
    [ "$engine" = sqlite ] || psql_ "SET client_min_messages = warning; DROP SCHEMA IF EXISTS mem_full CASCADE; CREATE SCHEMA mem_full; DROP SCHEMA IF EXISTS mem_empty CASCADE; CREATE SCHEMA mem_empty;"
    storage "$engine" mem_full
    t0=$(date +%s.%N)
    "$BIN/hub-publisher" roster-import "${STORAGE[@]}" --archive "$DIR/archive-$engine" --roster-key "$KEY" "$DIR/change.jsonl" >/dev/null
    echo "$engine import of $PERSONS persons (and the archive): $(echo "$(date +%s.%N) - $t0" | bc) s"
    if [ "$LOAD" = subsidies ]; then
        [ "$engine" = sqlite ] || psql_ "SET client_min_messages = warning; DROP SCHEMA IF EXISTS mem_small CASCADE; CREATE SCHEMA mem_small;"
        storage "$engine" mem_small
        "$BIN/hub-publisher" roster-import "${STORAGE[@]}" --archive "$DIR/archive-small-$engine" --roster-key "$KEY" "$DIR/small-change.jsonl" >/dev/null
    fi
done
start_hub() {  # $1 engine, $2 name; prints "seconds rss_after_start rss_after_load records_per_s"
    storage "$1" "$2"
    measure_hub "$2" "$KIOSKS" "${STORAGE[@]}"
}
for round in $(seq "$ROUNDS"); do
    for engine in $ENGINES; do
        if [ "$FLOOR" = mem_empty ]; then
            [ "$engine" = sqlite ] || psql_ "SET client_min_messages = warning; DROP SCHEMA IF EXISTS mem_empty CASCADE; CREATE SCHEMA mem_empty;"
            rm -f "$DIR"/mem_empty.sqlite*
        fi
        read -r e_up e_rss e_peak e_rps < <(start_hub "$engine" "$FLOOR")
        read -r f_up f_rss f_peak f_rps < <(start_hub "$engine" mem_full)
        echo "round $round $engine ${FLOOR#mem_}: start ${e_up}s rss ${e_rss}MB peak ${e_peak}MB ${e_rps} rec/s | $PERSONS persons: start ${f_up}s rss ${f_rss}MB peak ${f_peak}MB ${f_rps} rec/s | start ratio $(ratio "$f_up" "$e_up") peak ratio $(ratio "$f_peak" "$e_peak")"
    done
done
