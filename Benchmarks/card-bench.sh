#!/usr/bin/env bash
# Card benchmark: APDU round trip and full card read + authenticate through pcscd with
# the virtual card, Swift (kiosk-bench, release build) beside bare C (pcsc-baseline),
# and the ratio. Also the whole tap → decision of the product (Kiosk.check on a provisioned
# device with the vector snapshot) against the same bare C exchanges, and the cost of one
# Ed25519 verification (the C side verifies nothing). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
swift build -c release --product kiosk-bench >/dev/null
swift build -c release --product virtual-card >/dev/null
swift build -c release --product kioskctl >/dev/null
BIN=$(swift build -c release --show-bin-path)
# A provisioned device with the vector snapshot, for tap → decision (Kiosk.check).
STATE=$(mktemp -d "${TMPDIR:-/tmp}/card-bench.XXXXXX")
BENEFIT_KIOSK_TEST_NOW=2026-11-22T03:00:00Z "$BIN/kioskctl" provision --state-dir "$STATE" --device-id KSK-TEST-0001 \
    --institution 330782-H01 --profile hospital --issuer-key 330782-issuer-test=ccFN/6AgIzeALsTdT7e3Eyw+Wdaz4PSJiYy/wU1agY8= \
    --authority-key 330782-auth-test=oYIOYJP8glBE21IWS59YdxSMi796YEYlgjPf3cEJoaU= --hub-url http://127.0.0.1:9 \
    --printer "file:$STATE/receipts/" >/dev/null
BENEFIT_KIOSK_TEST_NOW=2026-11-22T03:00:00Z "$BIN/kioskctl" snapshot install --state-dir "$STATE" Provisioning/demo/snapshot-small.jsonl >/dev/null
gcc -O2 -o Benchmarks/pcsc-baseline Benchmarks/pcsc-baseline.c $(pkg-config --cflags --libs libpcsclite)
"$BIN/virtual-card" --cards Provisioning/demo/cards.json --card 3307820000000017 2>/dev/null &
VC=$!
trap 'kill $VC 2>/dev/null; rm -rf "$STATE"' EXIT
sleep 1.5
ISSUER="330782-issuer-test=ccFN/6AgIzeALsTdT7e3Eyw+Wdaz4PSJiYy/wU1agY8="
out=$( { Benchmarks/pcsc-baseline "Virtual PCD 00 00" "$N"; "$BIN/kiosk-bench" card --iterations "$N" --issuer-key "$ISSUER" --state-dir "$STATE"; } )
echo "$out"
echo "$out" | awk '
  { split($4, a, "="); split($5, b, "="); mean[$1" "$2]=a[2]; p50[$1" "$2]=b[2] }
  END {
    for (k in mean) { split(k, p, " "); if (p[1]=="swift") {
      c="c "p[2]; if (p[2]=="tap_to_decision") c="c read_and_authenticate"
      if (!(c in mean)) continue
      printf "ratio %s swift/c mean=%.2f p50=%.2f\n", p[2], mean[k]/mean[c], p50[k]/p50[c] } }
  }'
