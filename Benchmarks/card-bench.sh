#!/usr/bin/env bash
# Card benchmark: APDU round trip and full card read + authenticate through pcscd with
# the virtual card, Swift (kiosk-bench, release build) beside bare C (pcsc-baseline),
# and the ratio. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
swift build -c release --product kiosk-bench >/dev/null
swift build -c release --product virtual-card >/dev/null
BIN=$(swift build -c release --show-bin-path)
gcc -O2 -o Benchmarks/pcsc-baseline Benchmarks/pcsc-baseline.c $(pkg-config --cflags --libs libpcsclite)
"$BIN/virtual-card" --cards Tests/IntegrationTests/Fixtures/cards.json --card 3307820000000017 2>/dev/null &
VC=$!
trap 'kill $VC 2>/dev/null' EXIT
sleep 1.5
ISSUER="330782-issuer-test=ccFN/6AgIzeALsTdT7e3Eyw+Wdaz4PSJiYy/wU1agY8="
out=$( { Benchmarks/pcsc-baseline "Virtual PCD 00 00" "$N"; "$BIN/kiosk-bench" card --iterations "$N" --issuer-key "$ISSUER"; } )
echo "$out"
echo "$out" | awk '
  { split($4, a, "="); split($5, b, "="); mean[$1" "$2]=a[2]; p50[$1" "$2]=b[2] }
  END {
    for (k in mean) { split(k, p, " "); if (p[1]=="swift") {
      c="c "p[2]; printf "ratio %s swift/c mean=%.2f p50=%.2f\n", p[2], mean[k]/mean[c], p50[k]/p50[c] } }
  }'
