#!/usr/bin/env bash
# Issue 21 item 3: the hub under HOSTILE (default 1,000) hostile connections (a third silent,
# a third slowloris, a third slow bodies on a registered device's path; each reopened when
# dropped), for SECONDS (default 90) a round. Every round interleaves a quiet run (the floor)
# and a hostile run on a fresh SQLite hub; in each, one genuine kiosk drains RECORDS alert
# records (default 200, batches of 50) through the real uploader every 5 s, and the hub's RSS
# and open descriptors are sampled every 5 s. Prints per run: the genuine batch p50/p99, the
# hub's RSS and descriptors (first and highest sample); then the hostile/quiet ratio of the
# genuine p99 per round with its spread. Asserts nothing.
set -euo pipefail
source "$(dirname "$0")/common.sh"
HOSTILE=${HOSTILE:-1000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-90}
ROUNDS=${ROUNDS:-3}
RECORDS=${RECORDS:-200}
ulimit -n 20000 2>/dev/null || true
build kiosk-bench settlement-hub
scratch hub-hostile
echo "# hub-hostile hostile=$HOSTILE seconds=$SECONDS_PER_RUN rounds=$ROUNDS $(date -u +%FT%TZ) $(nproc) cores"
"$BIN/kiosk-bench" hub-load roster --kiosks 1 --out "$DIR/roster.jsonl"
"$BIN/kiosk-bench" hub-load queue --kiosks 1 --records "$RECORDS" --dir "$DIR/queued"
device=$(sed -n 's/.*"device_id":"\([^"]*\)".*/\1/p' "$DIR/roster.jsonl" | head -1)
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
run() {  # $1: quiet|hostile
    local name=$1-$round
    "$BIN/settlement-hub" serve --port 0 --log-level error --snapshot "$DIR/roster.jsonl" --db "$DIR/$name.sqlite" >"$DIR/$name.out" 2>"$DIR/$name.err" &
    local hub=$!; at_exit "kill $hub"
    for _ in $(seq 600); do grep -q "listening on" "$DIR/$name.out" 2>/dev/null && break; sleep 0.05; done
    local url; url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$DIR/$name.out")
    local port=${url##*:}
    local first_rss first_fds; first_rss=$(rss "$hub"); first_fds=$(fds "$hub")
    local attacker=
    if [ "$1" = hostile ]; then
        python3 Benchmarks/hostile.py 127.0.0.1 "$port" "$HOSTILE" "$SECONDS_PER_RUN" "$device" >"$DIR/$name.hostile" & attacker=$!
        sleep 10   # the flood in place before the first genuine batch
    fi
    local max_rss=$first_rss max_fds=$first_fds lat=()
    local end=$(( $(date +%s) + SECONDS_PER_RUN - 12 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        rm -rf "$DIR/kiosks"; cp -r "$DIR/queued" "$DIR/kiosks"
        out=$("$BIN/kiosk-bench" hub-load run --hub "$url" --kiosks 1 --batch 50 --dir "$DIR/kiosks")
        lat+=("$(echo "$out" | sed -n 's/.*batch_p99_ms=\([0-9.]*\).*/\1/p')")
        r=$(rss "$hub"); f=$(fds "$hub")
        max_rss=$(echo "if ($r > $max_rss) $r else $max_rss" | bc); [ "$f" -gt "$max_fds" ] && max_fds=$f
        sleep 5
    done
    [ -z "$attacker" ] || wait "$attacker"
    local p99; p99=$(printf '%s\n' "${lat[@]}" | sort -n | tail -1)
    echo "round $round $1 genuine_batch_p99_ms_samples=[${lat[*]}] worst=$p99 hub_rss_mb first=$first_rss max=$max_rss hub_fds first=$first_fds max=$max_fds $( [ -z "$attacker" ] || cat "$DIR/$name.hostile")"
    kill "$hub"; wait "$hub" 2>/dev/null || true
    LAST_P99=$p99
}
RATIOS=()
for round in $(seq "$ROUNDS"); do
    run quiet; quiet=$LAST_P99
    run hostile; hostile=$LAST_P99
    RATIOS+=("$(ratio "$hostile" "$quiet")")
done
echo "genuine worst batch p99, hostile/quiet: $(stats "${RATIOS[@]}")"
