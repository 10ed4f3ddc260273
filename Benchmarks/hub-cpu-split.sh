#!/usr/bin/env bash
# Issue 12, where the time goes under load: CPU seconds of the hub process(es), of
# PostgreSQL's processes and of the simulated kiosks during one hub-load run (ENGINE=sqlite|postgres, PROCS).
set -euo pipefail
source "$(dirname "$0")/common.sh"
ENGINE=${ENGINE:-postgres}; PROCS=${PROCS:-1}; KIOSKS=${KIOSKS:-50}; RECORDS=${RECORDS:-200}; BATCH=${BATCH:-50}
build kiosk-bench settlement-hub
scratch cpu-split
PG_URL=$(bash Provisioning/start-postgres.sh)
AS=(); [ "$(id -u)" -eq 0 ] && AS=(runuser -u postgres --)
"$BIN/kiosk-bench" hub-load roster --kiosks "$KIOSKS" --out "$DIR/roster.jsonl"
"$BIN/kiosk-bench" hub-load queue --kiosks "$KIOSKS" --records "$RECORDS" --dir "$DIR/kiosks"
if [ "$ENGINE" = sqlite ]; then STORAGE=(--db "$DIR/hub.sqlite"); else
  "${AS[@]}" psql -q -o /dev/null -h /tmp/benefit-kiosk-postgres -p 54329 -d benefit_kiosk_test -c "SET client_min_messages = warning; DROP SCHEMA IF EXISTS cpu_split CASCADE; CREATE SCHEMA cpu_split;"
  STORAGE=(--postgres "$PG_URL&search_path=cpu_split" --shelf "$DIR/shelf"); fi
pids=(); urls=()
for p in $(seq "$PROCS"); do
  "$BIN/settlement-hub" serve --port 0 --log-level error --snapshot "$DIR/roster.jsonl" "${STORAGE[@]}" >"$DIR/h$p.out" 2>&1 &
  pids+=($!); at_exit "kill $!"
  for _ in $(seq 600); do grep -q "listening on" "$DIR/h$p.out" && break; sleep 0.05; done
  urls+=(--hub "$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$DIR/h$p.out")")
done
cpu() { local t=0; for pid in "$@"; do [ -r /proc/$pid/stat ] && t=$((t + $(awk '{print $14 + $15}' /proc/$pid/stat))); done; echo $t; }
pg() { pgrep -u postgres postgres | tr '\n' ' '; }
h0=$(cpu "${pids[@]}"); p0=$(cpu $(pg))
/usr/bin/time -f "%U %S %e" -o "$DIR/k.time" "$BIN/kiosk-bench" hub-load run "${urls[@]}" --kiosks "$KIOSKS" --batch "$BATCH" --dir "$DIR/kiosks"
h1=$(cpu "${pids[@]}"); p1=$(cpu $(pg))
read -r ku ks ke <"$DIR/k.time"
tck=$(getconf CLK_TCK)
echo "cpu_split engine=$ENGINE processes=$PROCS wall_s=$ke hub_cpu_s=$(echo "scale=2; ($h1-$h0)/$tck" | bc) postgres_cpu_s=$(echo "scale=2; ($p1-$p0)/$tck" | bc) kiosks_cpu_s=$(echo "$ku + $ks" | bc)"
