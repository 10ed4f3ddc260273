#!/usr/bin/env bash
# Issue 12: the hub under load, on SQLite and on PostgreSQL, with 1 and 2 hub processes.
#   KIOSKS simulated kiosks (default 50), each with its own key registered in the hub's
#   roster, each draining RECORDS alert records (default 200) through the real uploader, a
#   signed batch of BATCH records (default 50) per request, kiosk i to hub process i mod P.
#   Prints, per engine and process count: accepted records/s, batch latency p50/p99 and each
#   hub process's peak RSS. Then the publisher: a full publication of PERSONS persons
#   (default 100,000; roster imported with hub-publisher roster-import) on each engine, with
#   the time and peak RSS of the import and of the publication. Asserts nothing.
# LOAD=0 skips the load rounds; POPULATION=FILE publishes the persons of an existing snapshot
# file (kiosk-bench snapshot-gen) instead of generating PERSONS; ENGINES (default "sqlite
# postgres") chooses the engines of the publisher part. The import prints when its pass 1
# (verification) ends: the rest is pass 2, the time it holds the hub's write lock.
# BASELINE_HUB=PATH: another settlement-hub binary (an earlier commit's release build) runs
# each set-up too, interleaved with this one in every round, so the two are compared in the
# same minutes (lines marked hub=baseline). PUBLISH=0 skips the publisher part; LOAD_ENGINES
# (default "sqlite postgres") chooses the engines of the load rounds. RECORD_KIND=subsidies
# queues subsidies instead of alerts (each names a card, with the card's own acknowledgement;
# the hubs are given the 2 × KIOSKS × RECORDS persons they are taken from with --snapshot).
# Needs PostgreSQL's server (Provisioning/start-postgres.sh starts the project's own).
set -euo pipefail
source "$(dirname "$0")/common.sh"
KIOSKS=${KIOSKS:-50}
RECORDS=${RECORDS:-200}
BATCH=${BATCH:-50}
PERSONS=${PERSONS:-100000}
ROUNDS=${ROUNDS:-3}
LOAD=${LOAD:-1}
POPULATION=${POPULATION:-}
ENGINES=${ENGINES:-sqlite postgres}
BASELINE_HUB=${BASELINE_HUB:-}
PUBLISH=${PUBLISH:-1}
LOAD_ENGINES=${LOAD_ENGINES:-sqlite postgres}
RECORD_KIND=${RECORD_KIND:-alerts}
build kiosk-bench settlement-hub hub-publisher
scratch hub-load
start_postgres
[ -z "$POPULATION" ] || PERSONS=$(grep -c '"type":"person"' "$POPULATION")
echo "# hub-load kind=$RECORD_KIND kiosks=$KIOSKS records=$RECORDS batch=$BATCH persons=$PERSONS rounds=$ROUNDS $(date -u +%FT%TZ) $(nproc) cores"

"$BIN/kiosk-bench" hub-load roster --kiosks "$KIOSKS" --out "$DIR/roster.jsonl"
ROSTER=(--snapshot "$DIR/roster.jsonl")
if [ "$RECORD_KIND" = subsidies ]; then
    "$BIN/kiosk-bench" snapshot-gen --persons $((2 * KIOSKS * RECORDS)) --card-keys --out "$DIR/persons.jsonl" --snapshot-id 330782-20261122-01 >/dev/null
    "$BIN/kiosk-bench" hub-load queue --kiosks "$KIOSKS" --records "$RECORDS" --dir "$DIR/queued" --subsidies "$DIR/persons.jsonl"
    ROSTER+=(--snapshot "$DIR/persons.jsonl")
else
    "$BIN/kiosk-bench" hub-load queue --kiosks "$KIOSKS" --records "$RECORDS" --dir "$DIR/queued"
fi

# A fresh store: SQLite file or PostgreSQL schema; sets STORAGE (the hubs' options).
fresh_store() {
    if [ "$1" = sqlite ]; then
        STORAGE=(--db "$DIR/$2.sqlite")
    else
        psql_ "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $2 CASCADE; CREATE SCHEMA $2;"
        STORAGE=(--postgres "$PG_URL&search_path=$2" --shelf "$DIR/$2.shelf")
    fi
}
peak_rss() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# ROUNDS rounds, each of the four set-ups in turn (interleaved: a noisy minute hits all four).
[ "$LOAD" = 1 ] || ROUNDS=0
for round in $(seq "$ROUNDS"); do
for engine in $LOAD_ENGINES; do
    for procs in 1 2; do
    for hub in current ${BASELINE_HUB:+baseline}; do
        binary="$BIN/settlement-hub"; [ "$hub" = current ] || binary="$BASELINE_HUB"
        name="load_${engine}_${procs}_${hub}_$round"
        fresh_store "$engine" "$name"
        pids=(); urls=()
        # One after the other: the first creates the schema.
        for p in $(seq "$procs"); do
            "$binary" serve --port 0 --log-level error "${ROSTER[@]}" "${STORAGE[@]}" >"$DIR/$name-$p.out" 2>"$DIR/$name-$p.err" &
            pids+=($!); at_exit "kill $! 2>/dev/null"
            for _ in $(seq 600); do grep -q "listening on" "$DIR/$name-$p.out" 2>/dev/null && break; sleep 0.05; done
            url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$DIR/$name-$p.out")
            [ -n "$url" ] || { echo "hub $p did not start:"; cat "$DIR/$name-$p.err"; exit 1; }
            urls+=(--hub "$url")
        done
        rm -rf "$DIR/kiosks"; cp -r "$DIR/queued" "$DIR/kiosks"
        out=$("$BIN/kiosk-bench" hub-load run "${urls[@]}" --kiosks "$KIOSKS" --batch "$BATCH" --dir "$DIR/kiosks")
        rss=""; for pid in "${pids[@]}"; do rss+="$(peak_rss "$pid") "; done
        echo "round $round $engine processes=$procs hub=$hub $out hub_peak_rss_mb=[ ${rss}]"
        for pid in "${pids[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
        [ "$engine" = sqlite ] || psql_ "SET client_min_messages = warning; DROP SCHEMA $name CASCADE;"
    done
    done
done
done
[ "$PUBLISH" = 1 ] || exit 0

# The publisher: roster import and a full publication of PERSONS persons.
if [ -z "$POPULATION" ]; then
    POPULATION="$DIR/population.jsonl"
    "$BIN/kiosk-bench" snapshot-gen --persons "$PERSONS" --out "$POPULATION" --snapshot-id 330782-20261122-01 >/dev/null
fi
start=$(date +%s.%N)
CHANGE=${ROSTER_CHANGE:-$DIR/roster-change.jsonl}   # ROSTER_CHANGE: kept for another run
gen=$("$BIN/kiosk-bench" roster-change --change-id "RC-LOAD-1" --out "$CHANGE" --from-snapshot "$POPULATION")
echo "roster change of $PERSONS persons written in $(echo "$(date +%s.%N) - $start" | bc) s, $(stat -c %s "$CHANGE") bytes"
ROSTER_KEY=(--roster-key "$(echo "$gen" | sed -n 's/.*key_id=\([^ ]*\) public_key=\([^ ]*\).*/\1=\2,330782/p')")
python3 -c "import base64; open('$DIR/authority.key','w').write(base64.b64encode(bytes([0x41]*32)).decode())"
chmod 600 "$DIR/authority.key"
timed() { /usr/bin/time -f "%e %M" "$@" 2>"$DIR/time.txt" >/dev/null; read -r secs kb <"$DIR/time.txt"; echo "seconds=$secs peak_rss_mb=$((kb / 1024))"; }
for engine in $ENGINES; do
    name="publish_$engine"
    fresh_store "$engine" "$name"
    # The import's output line by line with the time it came: pass 1 ends at "verified".
    start=$(date +%s.%N)
    ARCHIVE=(--archive "$DIR/$name.archive" "${ROSTER_KEY[@]}")   # the publisher's own folder (issue 21)
    rm -rf "$DIR/$name.archive"
    import=$(/usr/bin/time -f "%e %M" "$BIN/hub-publisher" roster-import "${STORAGE[@]}" "${ARCHIVE[@]}" "$CHANGE" 2>"$DIR/time.txt" |
        while read -r line; do echo "$(date +%s.%N) $line"; done)
    read -r secs kb <"$DIR/time.txt"
    verified=$(echo "$import" | awk '/ verified / {print $1}')
    pass1=$(echo "$verified - $start" | bc)
    import="seconds=$secs peak_rss_mb=$((kb / 1024)) pass1_verify_s=$pass1 pass2_apply_s=$(echo "$secs - $pass1" | bc)"
    publish=$(timed "$BIN/hub-publisher" publish --full --region 330782 --authority-key-file "$DIR/authority.key" --authority-key-id load "${STORAGE[@]}" "${ARCHIVE[@]}")
    if [ "$engine" = sqlite ]; then
        size=$(du -cm "$DIR/$name.sqlite"* | tail -1 | cut -f1)
    else
        size=$("${AS[@]}" psql -h "$PG_DIR" -p "$PG_PORT" -d benefit_kiosk_test -tAc \
            "SELECT SUM(pg_total_relation_size(c.oid)) / 1048576 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$name' AND c.relkind = 'r'")
    fi
    echo "$engine persons=$PERSONS roster_import $import publish_full $publish store_mb=$size"
    # Room for the next engine (a 10,000,000-person store is many gigabytes).
    if [ "$engine" = sqlite ]; then rm -rf "$DIR/$name.sqlite"*; else psql_ "DROP SCHEMA $name CASCADE"; fi
done
