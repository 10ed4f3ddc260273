#!/usr/bin/env bash
# Card benchmark (issues 11, 24): the product against a C floor that does the same APDUs
# and the spec's own signature work (Benchmarks/pcsc-baseline.c, OpenSSL), through pcscd and
# the virtual card, ROUNDS rounds (default 5) interleaved: C, then the two-transaction SQLite
# floor, then the product (kiosk-bench card, release build). Per round and as median and
# range of the ratios at p50:
#   apdu_round_trip        one SELECT, Swift against C
#   read_and_authenticate  SELECT, three READ BINARY, INTERNAL AUTHENTICATE and two signature
#                          checks, against C's exchanges alone (c exchanges_only)
#   tap_to_decision        Kiosk.check on a provisioned device against C's read_and_authenticate:
#                          the same exchanges and the three Ed25519 verifications of a tap
#   tap_to_granted         Kiosk.charge (a 1-fen bill: decision, v2 write, acknowledgement,
#                          the ledger's two durable transactions) against the C read, the three
#                          verifications, the v2 write (PSO VERIFY CERTIFICATE, GET CHALLENGE,
#                          UPDATE BINARY signed with the device key) and the acknowledgement
#                          verified; and against that plus two bare durable SQLite transactions
#                          (sqlite-floor.c), which the product cannot do without.
# TIMING=fast|slow: the card answers with a real card's timing (virtual-card --timing); the
# figures then also give the product's ADDED milliseconds (product − C, both against the
# same timed card) at p50.
# Prints figures; asserts nothing. N (default 2000) APDU round trips, N/5 taps per round.
set -euo pipefail
source "$(dirname "$0")/common.sh"
N=${1:-2000}
ROUNDS=${ROUNDS:-5}
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
build kiosk-bench virtual-card kioskctl
scratch card-bench
card_device "$DIR/state-0"   # sets ISSUER, SEED, CERT, TEMPLATE
start_virtual_card
gcc -O2 -o "$DIR/pcsc-baseline" Benchmarks/pcsc-baseline.c $(pkg-config --cflags --libs libpcsclite) -lcrypto
cc -O2 -o "$DIR/sqlite-floor" Benchmarks/sqlite-floor.c -lsqlite3
SEED_HEX=$(echo "$SEED" | base64 -d | od -An -tx1 | tr -d ' \n')
ISSUER_HEX=$(echo "${ISSUER#*=}" | base64 -d | od -An -tx1 | tr -d ' \n')
TAPS=$(( N / 5 > 50 ? N / 5 : 50 ))
echo "# N=$N taps=$TAPS rounds=$ROUNDS timing=${TIMING:-none} $(date -u +%FT%TZ)"
names="apdu_round_trip read_and_authenticate tap_to_decision tap_to_granted tap_to_granted+sqlite"
declare -A R A
for r in $(seq "$ROUNDS"); do
    # A fresh device every round: the bench taps one card, and every granted tap adds a
    # record to the same person's ledger, which each later tap's figures (L) read; 400 is
    # already more than a person's year.
    card_device "$DIR/state-$r"
    rm -f "$DIR"/floor.sqlite*
    c=$("$DIR/pcsc-baseline" "Virtual PCD 00 00" "$N" 3307820000000017 "$SEED_HEX" "$CERT" "$TEMPLATE" "$ISSUER_HEX" 2>/dev/null)
    q=$("$DIR/sqlite-floor" "$DIR/floor.sqlite" "$TAPS" 640 | p50 floor two_durable_transactions)
    s=$("$BIN/kiosk-bench" card --iterations "$N" --issuer-key "$ISSUER" --state-dir "$DIR/state-$r" --grant)
    [ "$r" = 1 ] && echo "$c" && echo "c two_durable_transactions p50_us=$q" && echo "$s"
    line="round $r:"
    for n in $names; do
        case $n in
            apdu_round_trip) f=$(echo "$c" | p50 c "$n") ;;
            read_and_authenticate) f=$(echo "$c" | p50 c exchanges_only) ;;
            tap_to_decision) f=$(echo "$c" | p50 c read_and_authenticate) ;;
            tap_to_granted) f=$(echo "$c" | p50 c read_authenticate_write) ;;
            tap_to_granted+sqlite) f=$(echo "$(echo "$c" | p50 c read_authenticate_write) + $q" | bc) ;;
        esac
        v=$(echo "$s" | p50 swift "${n%+sqlite}")
        x=$(ratio "$v" "$f"); R[$n]="${R[$n]:-} $x"
        A[$n]="${A[$n]:-} $(echo "scale=2; ($v - $f) / 1000" | bc)"
        line="$line $n ${v}/${f} us = $x;"
    done
    echo "$line"
done
for n in $names; do
    # shellcheck disable=SC2086
    echo "ratio_p50 $n $(stats ${R[$n]})"
    # shellcheck disable=SC2086
    echo "added_ms_p50 $n $(stats ${A[$n]})"
done
