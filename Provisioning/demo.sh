#!/usr/bin/env bash
# THE DEMO COMMAND (README): a whole kiosk on a fresh Debian machine with no hardware.
# Installs what is needed, starts pcscd, builds, provisions two demo devices with the TEST
# keys of the card spec vectors, installs the vector snapshot, starts a local settlement
# hub, a hospital kioskd (reader "Virtual PCD 00 00", port 8080) and a township kioskd
# ("Virtual PCD 00 01", port 8081), both printing to files, and then runs the flows end
# to end with virtual cards: a bill subsidised, its receipt printed and verified, the
# record uploaded; a status check of a suspended person; a legal-aid application.
# Everything keeps running afterwards; `bash Provisioning/demo.sh stop` ends it.
#
# The demo clock is fixed at the vectors' instant (2026-11-22T03:00:00Z) through the
# test-only BENEFIT_KIOSK_TEST_NOW, so the vector snapshot is valid whatever today is.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-/tmp/benefit-kiosk-demo}
if [ "${1:-}" = stop ]; then
    [ -f "$DEMO/pids" ] && kill $(cat "$DEMO/pids") 2>/dev/null || true
    rm -f "$DEMO/pids"; echo "demo stopped"; exit 0
fi
[ -f "$DEMO/pids" ] && kill $(cat "$DEMO/pids") 2>/dev/null || true
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
echo "building (the first build takes several minutes)…"
# One product per call: `swift build` keeps only the last of several --product options.
for p in kioskd kioskctl virtual-card settlement-hub device-ca; do
    swift build --product "$p" 2>&1 | grep -E "error|warning: unre" || true
done
BIN=$(swift build --show-bin-path)
for b in kioskd kioskctl virtual-card settlement-hub device-ca; do [ -x "$BIN/$b" ] || { echo "build failed: $b missing" >&2; exit 1; }; done
rm -rf "$DEMO"; mkdir -p "$DEMO"
export BENEFIT_KIOSK_TEST_NOW=2026-11-22T03:00:00Z
ISSUER=330782-issuer-test=ccFN/6AgIzeALsTdT7e3Eyw+Wdaz4PSJiYy/wU1agY8=
AUTHORITY=330782-auth-test=oYIOYJP8glBE21IWS59YdxSMi796YEYlgjPf3cEJoaU=
DEVICE_CA=330782-device-ca-test=bdK55oarEcW5mSXaMeBL4YG7xjN613TKeTVzVEnAJx0=
# The TEST device CA's key (vectors/test-keys.json), as the platform's publisher holds its
# own: in a 0600 file, used by the reference tool device-ca to certify the demo devices.
( umask 077; echo "RU+SUV1gBN6+zB+2ArPfAmDcM0ltGprnYaTYOegoBvU=" >"$DEMO/device-ca.key" )
SNAPSHOT=Provisioning/demo/snapshot-small.jsonl
CARDS=Provisioning/demo/cards.json
HUB=http://127.0.0.1:8470

provision() {  # name device-id institution profile seed
    # The demo devices take the vector seeds so that the vector snapshot's device entries and
    # the hub's roster know their keys; a real device makes its key itself (no seed).
    "$BIN/kioskctl" provision --state-dir "$DEMO/$1" --device-id "$2" --institution "$3" --profile "$4" \
        --issuer-key "$ISSUER" --authority-key "$AUTHORITY" --device-ca-key "$DEVICE_CA" --hub-url "$HUB" \
        --printer "file:$DEMO/$1/receipts/" --device-key-seed "$5" >/dev/null
    # Certification: the device's request goes to the platform, the certificate comes back.
    "$BIN/kioskctl" certificate request --state-dir "$DEMO/$1" >"$DEMO/$1.request"
    "$BIN/device-ca" issue --ca-key "$DEMO/device-ca.key" --ca-key-id 330782-device-ca-test \
        --request "$DEMO/$1.request" --valid-from 20261110 --days 90 --out "$DEMO/$1.cert" 2>/dev/null
    "$BIN/kioskctl" certificate install --state-dir "$DEMO/$1" "$DEMO/$1.cert"
    "$BIN/kioskctl" snapshot install --state-dir "$DEMO/$1" "$SNAPSHOT"
}
provision hospital KSK-TEST-0001 330782-H01 hospital x5ltRC+avHN24CoyFoUz5aWKCtIuAPrNcCW5jVKMTqU=
provision township KSK-TEST-0002 330782-H02 township MfSiw5nBRJ7StYQeiAl3Ydt9MnY9IfdDsNu9hmzmpD8=

"$BIN/settlement-hub" --port 8470 --db "$DEMO/hub.sqlite" --snapshot "$SNAPSHOT" >"$DEMO/hub.log" 2>&1 & echo $! >>"$DEMO/pids"
"$BIN/kioskd" --state-dir "$DEMO/hospital" --port 8080 --reader "Virtual PCD 00 00" >"$DEMO/hospital.log" 2>&1 & echo $! >>"$DEMO/pids"
"$BIN/kioskd" --state-dir "$DEMO/township" --port 8081 --reader "Virtual PCD 00 01" >"$DEMO/township.log" 2>&1 & echo $! >>"$DEMO/pids"
for port in 8080 8081; do
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done

card() {  # present CARD PORT: the card stays in the reader until `pull`
    "$BIN/virtual-card" --cards "$CARDS" --card "$1" --port "$2" 2>/dev/null & echo $! >"$DEMO/card.$2"
}
pull() { kill "$(cat "$DEMO/card.$1")" 2>/dev/null || true; rm -f "$DEMO/card.$1"; sleep 0.8; }
result() {  # PORT CARD_LAST4 [CODE]: wait for that card's result (and code) on a kiosk, print it
    for _ in $(seq 1 80); do
        s=$(curl -fs "http://127.0.0.1:$1/api/state")
        echo "$s" | grep -q "\"phase\":\"result\".*\*\*\*\*$2" && { [ -z "${3:-}" ] || echo "$s" | grep -q "\"code\":\"$3\""; } && break
        sleep 0.1
    done
    echo "$s" | python3 -c 'import json,sys; s=json.load(sys.stdin); r=s.get("result") or {}; print("  screen:", r.get("code"), "·", r.get("message"), "·", {k: r[k] for k in ("card_number","subsidy_fen","patient_pays_fen","records","receipt","detail","matter") if r.get(k)})'
}

echo; echo "── 1. hospital: the HIS sends a bill of ¥100.00, patient 王秀英 taps card …0017"
curl -fs -XPOST http://127.0.0.1:8080/api/bills -H 'Content-Type: application/json' -d '{"bill_reference":"H01-20261122-000123","bill_fen":10000}'; echo
card 3307820000000017 35963; result 8080 0017 granted; pull 35963
RECEIPT=$(ls "$DEMO"/hospital/receipts/*.png | head -1)
echo "  receipt QR verified: $("$BIN/kioskctl" receipt verify --state-dir "$DEMO/hospital" "$RECEIPT")"
echo; echo "── 2. hospital: 陈桂兰's allowance is stopped (停保): card …0033, no bill"
card 3307820000000033 35963; result 8080 0033; pull 35963
echo; echo "── 3. township: 李建国 taps his legal aid card …0025 and applies (labor remuneration)"
card 3307820000100025 35964; result 8081 0025
curl -fs -XPOST http://127.0.0.1:8081/api/legal-aid -H 'Content-Type: application/json' -d '{"matter":"labor_remuneration"}' >/dev/null
result 8081 0025 applied; pull 35964
echo; echo "── 4. settlement: the kiosks upload to the local hub"
for _ in $(seq 1 50); do
    q=$(curl -fs http://127.0.0.1:8080/healthz | python3 -c 'import json,sys; print(json.load(sys.stdin)["queued_records"])')
    [ "$q" = 0 ] && break; sleep 0.2
done
"$BIN/kioskctl" queue --state-dir "$DEMO/hospital" | head -5
echo "  hub holds: $(sqlite3 "$DEMO/hub.sqlite" 'select count(*) from hub_record' 2>/dev/null || echo '?') records"

cat <<EOT

Where to look
  screens      http://127.0.0.1:8080/ (hospital)   http://127.0.0.1:8081/ (township)
               screenshot: chromium --headless --no-sandbox --timeout=3000 --screenshot=s.png http://127.0.0.1:8080/
  receipts     $DEMO/hospital/receipts/  $DEMO/township/receipts/  (.escpos as sent, .png QR, .txt text)
  ledger       $BIN/kioskctl ledger --state-dir $DEMO/hospital ;  kioskctl queue … ;  kioskctl receipt verify FILE.png …
  health       curl http://127.0.0.1:8080/healthz ;  metrics: curl http://127.0.0.1:8080/metrics
  bill API     curl -XPOST http://127.0.0.1:8080/api/bills -d '{"bill_reference":"B2","bill_fen":5000}'
               then: $BIN/virtual-card --cards $CARDS --card 3307820000000058 --port 35963
  logs         $DEMO/hospital.log  $DEMO/township.log  $DEMO/hub.log
  stop         bash Provisioning/demo.sh stop
EOT
