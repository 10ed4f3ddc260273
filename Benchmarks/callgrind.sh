#!/usr/bin/env bash
# Issue 11: instruction counts (valgrind --tool=callgrind), which do not move with whatever
# else the machine does: the regression figures the README tracks.
#   per tap → decision       kiosk-bench card --only tap_to_decision, 40 vs 10 taps (the product's
#   per tap → granted        process only; pcscd and the virtual card are not counted), and
#                            --only tap_to_granted (1-fen bills, v2 write, two ledger transactions)
#   per decision + commit    kiosk-bench decide on a 20,000-person store, 400 vs 100 iterations
#                            (with the WAL checkpoint kioskd does when a card leaves, as decide does by default)
#   per snapshot record      kiosk-bench snapshot-install, 20,000 vs 10,000 persons
#   per receipt              kiosk-bench receipt, 200 vs 50 receipts
# Each figure is the difference of two runs divided by the difference of their work, so
# start-up and set-up cancel out. Release build; prints figures; asserts nothing.
# The tap figures need pcscd (bash Provisioning/start-pcscd.sh); without it they are skipped.
set -euo pipefail
source "$(dirname "$0")/common.sh"
build kiosk-bench kioskctl virtual-card
scratch callgrind
export SQLITE_TMPDIR="$DIR"
# valgrind 3.19 cannot read the DWARF 5 of Swift's release binaries ("Possibly corrupted
# debuginfo file"): it counts a copy without debug information (the counts are the same).
cp "$BIN/kiosk-bench" "$DIR/kiosk-bench" && strip --strip-debug "$DIR/kiosk-bench"
BENCH=$DIR/kiosk-bench
ir() {  # total instructions of one run of the bench with the given arguments
    valgrind --tool=callgrind --callgrind-out-file="$DIR/cg.out" "$BENCH" "$@" >"$DIR/cg.stdout" 2>"$DIR/cg.err" || { cat "$DIR/cg.err" >&2; exit 1; }
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$DIR/cg.out"
}
echo "# callgrind $(valgrind --version) $(date -u +%FT%TZ)"
if pgrep -x pcscd >/dev/null; then
    start_virtual_card
    for f in tap_to_decision tap_to_granted; do
        # A fresh device for each run: a ledger grown by the previous run's taps would bias the difference.
        card_device "$DIR/state-$f-10"; card_device "$DIR/state-$f-40"
        a=$(ir card --iterations 10 --only "$f" --grant --issuer-key "$ISSUER" --state-dir "$DIR/state-$f-10")
        b=$(ir card --iterations 40 --only "$f" --grant --issuer-key "$ISSUER" --state-dir "$DIR/state-$f-40")
        echo "instructions_per_$f=$(( (b - a) / 30 ))"
    done
else
    echo "# no pcscd: tap figures skipped"
fi
"$BENCH" snapshot-gen --persons 10000 --out "$DIR/s10.jsonl" --snapshot-id 330782-20261122-01 >/dev/null
"$BENCH" snapshot-gen --persons 20000 --out "$DIR/s20.jsonl" --snapshot-id 330782-20261122-01 >/dev/null
r10=$(grep -c . "$DIR/s10.jsonl"); r20=$(grep -c . "$DIR/s20.jsonl")
a=$(ir snapshot-install --file "$DIR/s10.jsonl" --db "$DIR/i10.sqlite" --fresh)
b=$(ir snapshot-install --file "$DIR/s20.jsonl" --db "$DIR/i20.sqlite" --fresh)
echo "instructions_per_snapshot_record=$(( (b - a) / (r20 - r10) ))"
"$BENCH" snapshot-install --file "$DIR/s20.jsonl" --db "$DIR/d.sqlite" --fresh >/dev/null
cp "$DIR/d.sqlite" "$DIR/d2.sqlite"
granted() { sed -n 's/.*granted=\([0-9]*\).*/\1/p' "$DIR/cg.stdout"; }
a=$(ir decide --db "$DIR/d.sqlite" --iterations 100 --persons 20000); ga=$(granted)
b=$(ir decide --db "$DIR/d2.sqlite" --iterations 400 --persons 20000); gb=$(granted)
echo "instructions_per_decision_and_commit=$(( (b - a) / (gb - ga) )) (per granted and committed decision; the few refused lookups among the 300 are counted in)"
a=$(ir receipt --iterations 50)
b=$(ir receipt --iterations 200)
echo "instructions_per_receipt=$(( (b - a) / 150 ))"
