#!/usr/bin/env bash
# Issue 11: the full install of N persons (default 1,000,000) against its floor, measured in
# the same run, interleaved: SQLite's own bulk load (sqlite3 .import, one transaction, WAL,
# synchronous=FULL) of the same rows into the same schema (WITHOUT ROWID tables keyed as the
# store's). The product also reads, verifies and parses the signed file; the floor does not.
# ROUNDS rounds (default 5) of floor then product, each into a fresh file; prints each round
# and the median and range of the ratio, and the product's peak RSS. Asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ROUNDS=${ROUNDS:-5}
SCRATCH=${SCRATCH:-.build}
swift build -c release --product kiosk-bench --scratch-path "$SCRATCH" >/dev/null
BIN=$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/kiosk-bench
DIR=$(mktemp -d "${TMPDIR:-/tmp}/install-floor.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
export SQLITE_TMPDIR="$DIR"
echo "# N=$N rounds=$ROUNDS dir=$DIR $(date -u +%FT%TZ)"
# SNAPSHOT=FILE: a snapshot-gen file of N persons made beforehand (10,000,000 take ~35 min to make here).
if [ -n "${SNAPSHOT:-}" ]; then ln -s "$(realpath "$SNAPSHOT")" "$DIR/full.jsonl"
else "$BIN" snapshot-gen --persons "$N" --out "$DIR/full.jsonl" --snapshot-id 330782-20261122-01 >/dev/null; fi
python3 Benchmarks/snapshot-to-csv.py "$DIR/full.jsonl" "$DIR"
cat >"$DIR/load.sql" <<SQL
PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
CREATE TABLE person_0 (person_ref TEXT PRIMARY KEY, status TEXT NOT NULL, status_reason TEXT NOT NULL, programs TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE card_0 (card_number TEXT PRIMARY KEY, person_ref TEXT NOT NULL, status TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE usage_0 (person_ref TEXT NOT NULL, program TEXT NOT NULL, period TEXT NOT NULL, used_fen INTEGER NOT NULL, PRIMARY KEY (person_ref, program, period)) WITHOUT ROWID;
.mode csv
.import $DIR/person.csv person_0
.import $DIR/card.csv card_0
.import $DIR/usage.csv usage_0
SQL
ratios=()
for r in $(seq "$ROUNDS"); do
    rm -f "$DIR"/floor.sqlite* "$DIR"/kiosk.sqlite*
    s=$(date +%s.%N); sqlite3 "$DIR/floor.sqlite" <"$DIR/load.sql" >/dev/null; f=$(echo "$(date +%s.%N) - $s" | bc)
    out=$("$BIN" snapshot-install --file "$DIR/full.jsonl" --db "$DIR/kiosk.sqlite" --fresh)
    p=$(echo "$out" | sed -n 's/.*install_seconds=\([0-9.]*\).*/\1/p'); rss=$(echo "$out" | sed -n 's/.*peak_rss_mb=\([0-9.]*\).*/\1/p')
    ratio=$(echo "scale=2; $p / $f" | bc); ratios+=("$ratio")
    printf 'round %s: floor %.1f s | install %.1f s (peak RSS %s MB) | ratio %s\n' "$r" "$f" "$p" "$rss" "$ratio"
done
# Where the product's time goes beyond SQLite: reading + SHA-256, JSON parse, field extraction.
"$BIN" snapshot-profile --file "$DIR/full.jsonl" | grep "non_sqlite_total"
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {printf "ratio_install_vs_bulk_load median %s (range %s–%s)\n", a[int((NR+1)/2)], a[1], a[NR]}'
