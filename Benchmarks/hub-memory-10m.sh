#!/usr/bin/env bash
# Issue 21 item 5 at 10,000,000 persons on PostgreSQL, in minutes instead of hours: the
# roster table is filled with SQL (PERSONS persons and as many cards, default 10,000,000,
# with the line shapes snapshot-gen writes) on top of a 3-person roster change applied by
# `hub-publisher roster-import` (programs, devices, the change's mark). The whole pipeline at
# this size (snapshot-gen, the roster change, the publisher's import) takes over an hour on
# these machines (Benchmarks/hub-memory.sh PERSONS=10000000 ENGINES=postgres does it); the
# hub reads the same table either way. Then the hub starts on it and on an empty schema,
# interleaved (ROUNDS, default 2): start-up, RSS, peak and records/s after 50 kiosks × 200
# alert records, as hub-memory.sh prints them. Asserts nothing. Needs the project's
# PostgreSQL (Provisioning/start-postgres.sh); the schemas mem10m and mem10e are replaced.
set -euo pipefail
source "$(dirname "$0")/common.sh"
PERSONS=${PERSONS:-10000000}
ROUNDS=${ROUNDS:-2}
build kiosk-bench settlement-hub hub-publisher
scratch hub-memory-10m
start_postgres
echo "# hub-memory-10m persons=$PERSONS rounds=$ROUNDS $(date -u +%FT%TZ) $(nproc) cores"
psql_ "SET client_min_messages = warning; DROP SCHEMA IF EXISTS mem10m CASCADE; CREATE SCHEMA mem10m;"
"$BIN/kiosk-bench" snapshot-gen --persons 3 --out "$DIR/p3.jsonl" --snapshot-id 330782-20261122-01 >/dev/null
gen=$("$BIN/kiosk-bench" roster-change --change-id RC-M10-0 --out "$DIR/c3.jsonl" --from-snapshot "$DIR/p3.jsonl")
KEY=$(echo "$gen" | sed -n 's/.*key_id=\([^ ]*\) public_key=\([^ ]*\).*/\1=\2,330782/p')
"$BIN/hub-publisher" roster-import --postgres "$PG_URL&search_path=mem10m" --shelf "$DIR/shelf" --archive "$DIR/archive" --roster-key "$KEY" "$DIR/c3.jsonl" >/dev/null
t0=$(date +%s.%N)
psql_ "INSERT INTO mem10m.roster_entry (region, type, key, line, seq)
    SELECT '330782', 'person', ref, '{\"person_ref\":\"' || ref || '\",\"programs\":[\"HM-SUBSIDY\"],\"status\":\"active\",\"status_reason\":\"\",\"type\":\"person\"}', 1
    FROM (SELECT md5('m10-' || i) AS ref FROM generate_series(3, $PERSONS - 1) i) s;
  INSERT INTO mem10m.roster_entry (region, type, key, line, seq)
    SELECT '330782', 'card', num, '{\"card_number\":\"' || num || '\",\"person_ref\":\"' || ref || '\",\"status\":\"active\",\"type\":\"card\"}', 1
    FROM (SELECT '3307829' || lpad(i::text, 9, '0') AS num, md5('m10-' || i) AS ref FROM generate_series(3, $PERSONS - 1) i) s;
  ANALYZE mem10m.roster_entry;"
size=$("${AS[@]}" psql -h "$PG_DIR" -p "$PG_PORT" -d benefit_kiosk_test -tAc "SELECT pg_size_pretty(pg_total_relation_size('mem10m.roster_entry'))")
echo "roster filled with SQL in $(echo "$(date +%s.%N) - $t0" | bc) s: roster_entry $size"
"$BIN/kiosk-bench" hub-load roster --kiosks 50 --out "$DIR/roster.jsonl"
"$BIN/kiosk-bench" hub-load queue --kiosks 50 --records 200 --dir "$DIR/queued"
start_hub() {  # $1 schema
    read -r up rss0 rss1 rps < <(measure_hub "$1" 50 --postgres "$PG_URL&search_path=$1" --shelf "$DIR/shelf-$1")
    echo "$1 start ${up}s rss ${rss0}MB peak ${rss1}MB $rps rec/s"
}
for round in $(seq "$ROUNDS"); do
    psql_ "SET client_min_messages = warning; DROP SCHEMA IF EXISTS mem10e CASCADE; CREATE SCHEMA mem10e;"
    echo "round $round: $(start_hub mem10e) | $(start_hub mem10m)"
done
