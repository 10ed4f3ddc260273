#!/usr/bin/env bash
# Issue 11: the queue drain against the hub's bare insert rate, measured in the same run,
# interleaved. A store of a 20,000-person snapshot takes N decisions (default 5,000; about
# nine in ten are granted, one record each) whose card acknowledgements a hub can check
# (kiosk-bench decide --card-acks). Each of ROUNDS rounds (default 5):
#   floor    the records a hub stored, inserted into a fresh file with the hub's own table,
#            indexes and triggers, 500 per durable transaction (hub-insert-floor.py)
#   product  a fresh copy of the store drained by the kiosk's uploader (kiosk-bench drain:
#            signed batches of 500 over HTTP on loopback) into a fresh settlement-hub, which
#            checks every record (signature, roster, card acknowledgement) and stores it once
# Prints records per second of both, the ratio (target ≥ 0.5) with its median and range, and
# the CPU seconds of the hub and of the kiosk in each product round. Asserts nothing.
# A second floor does the spec's own work too (issue 24): the same inserts after verifying
# every subsidy's card acknowledgement, on two worker processes (hub-insert-floor.py
# --verify); its ratio shows what the hub adds beyond the spec's Ed25519 checks.
# BASELINE_HUB=PATH: each round also drains into that settlement-hub binary (another build),
# interleaved, and prints its ratio beside the current one's.
set -euo pipefail
source "$(dirname "$0")/common.sh"
N=${1:-5000}
ROUNDS=${ROUNDS:-5}
build kiosk-bench settlement-hub
scratch drain-floor
HUB_PID=
at_exit '[ -n "$HUB_PID" ] && kill "$HUB_PID"'
echo "# N=$N rounds=$ROUNDS $(date -u +%FT%TZ)"
"$BIN/kiosk-bench" snapshot-gen --persons 20000 --card-keys --out "$DIR/s.jsonl" --snapshot-id 330782-20261122-01 >/dev/null
"$BIN/kiosk-bench" snapshot-install --file "$DIR/s.jsonl" --db "$DIR/k0.sqlite" --fresh >/dev/null
"$BIN/kiosk-bench" decide --db "$DIR/k0.sqlite" --iterations "$N" --persons 20000 --card-acks | grep codes
DEVICE=$("$BIN/kiosk-bench" bench-device-key)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
product() {  # one drain into a fresh hub (HUB, or this build's); prints "records_per_second hub_cpu_s"
    rm -f "$DIR"/hub.sqlite* "$DIR"/k.sqlite*
    cp "$DIR/k0.sqlite" "$DIR/k.sqlite"
    "${HUB:-$BIN/settlement-hub}" serve --db "$DIR/hub.sqlite" --port 0 --snapshot "$DIR/s.jsonl" --device "$DEVICE" >"$DIR/hub.log" 2>&1 &
    HUB_PID=$!
    for _ in $(seq 600); do grep -q "listening on http" "$DIR/hub.log" && break; sleep 0.1; done
    local url t0 out t1
    url=$(grep -o 'http://[0-9.:]*' "$DIR/hub.log" | head -1)
    t0=$(ticks "$HUB_PID")
    out=$("$BIN/kiosk-bench" drain --db "$DIR/k.sqlite" --hub "$url")
    t1=$(ticks "$HUB_PID")
    kill "$HUB_PID"; wait "$HUB_PID" 2>/dev/null || true; HUB_PID=
    echo "$(echo "$out" | sed -n 's/.*records_per_second=\([0-9.]*\).*/\1/p') $(echo "scale=2; ($t1 - $t0) / $(getconf CLK_TCK)" | bc)"
}
product >/dev/null   # a hub file to take the floor's rows from
cp "$DIR/hub.sqlite" "$DIR/rows.sqlite"
ratios=(); baseline=(); spec=()
for r in $(seq "$ROUNDS"); do
    rm -f "$DIR"/floor.sqlite*
    f=$(python3 Benchmarks/hub-insert-floor.py "$DIR/rows.sqlite" "$DIR/floor.sqlite" 500 | sed -n 's/.*records_per_second=\([0-9.]*\).*/\1/p')
    read -r p hubcpu <<<"$(product)"
    if [ -z "$p" ] || [ -z "$f" ]; then echo "round $r: no figure (the drain or the floor failed; see above)" >&2; exit 1; fi
    x=$(ratio "$p" "$f"); ratios+=("$x")
    rm -f "$DIR"/floor.sqlite*
    line=$(python3 Benchmarks/hub-insert-floor.py "$DIR/rows.sqlite" "$DIR/floor.sqlite" 500 --verify "$DIR/s.jsonl")
    v=$(echo "$line" | sed -n 's/.*records_per_second=\([0-9.]*\).*/\1/p')
    [ -n "$v" ] || { echo "round $r: the floor with the spec's checks failed" >&2; exit 1; }
    spec+=("$(ratio "$p" "$v")")
    echo "round $r: floor ${f} records/s | drain ${p} records/s (hub CPU ${hubcpu} s) | ratio $x | floor with the spec's checks ($(echo "$line" | grep -o 'verified=[0-9]*')) ${v} records/s, ratio ${spec[-1]}"
    if [ -n "${BASELINE_HUB:-}" ]; then
        read -r b bcpu <<<"$(HUB=$BASELINE_HUB product)"
        [ -n "$b" ] || { echo "round $r: the baseline hub's drain failed" >&2; exit 1; }
        baseline+=("$(ratio "$b" "$f")")
        echo "round $r: baseline hub drain ${b} records/s (hub CPU ${bcpu} s) | ratio ${baseline[-1]}"
    fi
done
echo "ratio_drain_vs_hub_bare_insert $(stats "${ratios[@]}")"
echo "ratio_drain_vs_insert_with_the_spec_checks $(stats "${spec[@]}")"
[ -z "${BASELINE_HUB:-}" ] || echo "baseline_ratio_drain_vs_hub_bare_insert $(stats "${baseline[@]}")"
