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
# It stops with a message naming what to do when a virtual reader already holds a card (a
# card emulator left over from a benchmark, say, or a test run), when a port it needs is
# taken, when a card of its own cannot reach its reader (virtual-card exits 3), or when a
# screen is not the one a step announced (that card and that code). The processes it
# leaves running get none of its file descriptors but 0, 1 and 2 (close-fds.sh).
#
# The demo clock is fixed at the vectors' instant (2026-11-22T03:00:00Z) through the
# test-only BENEFIT_KIOSK_TEST_NOW, so the vector snapshot is valid whatever today is.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-/tmp/benefit-kiosk-demo}
stop_demo() {  # the hub, the kiosks and any card of a previous run, and wait until they are gone
    local pids
    pids=$(cat "$DEMO/pids" "$DEMO"/card.3596[34] 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    kill $pids 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
    rm -f "$DEMO/pids" "$DEMO"/card.3596[34]
}
if [ "${1:-}" = stop ]; then
    stop_demo; echo "demo stopped"; exit 0
fi
stop_demo
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
echo "building (the first build takes several minutes)…"
# One product per call: `swift build` keeps only the last of several --product options.
for p in kioskd kioskctl virtual-card settlement-hub device-ca; do
    swift build --product "$p" 2>&1 | grep -E "error|warning: unre" || true
done
BIN=$(swift build --show-bin-path)
for b in kioskd kioskctl virtual-card settlement-hub device-ca; do [ -x "$BIN/$b" ] || { echo "build failed: $b missing" >&2; exit 1; }; done
# Long-lived processes are started through close-fds.sh: they keep no descriptor of ours.
DETACHED=(bash Provisioning/close-fds.sh)
reader_name() { case $1 in 35963) echo "Virtual PCD 00 00" ;; 35964) echo "Virtual PCD 00 01" ;; esac; }
holder_of() {  # PORT: who is connected to that vpcd port, e.g. "virtual-card (pid 123)"
    ss -Htnp "dport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -1
}
free_hint() {  # PORT: how to free that reader
    local holder pid
    holder=$(holder_of "$1"); pid=$(echo "$holder" | sed -n 's/.*(pid \([0-9]*\))/\1/p')
    if [ -n "$pid" ]; then
        echo "it is held by $holder: stop it (kill $pid, or wait for the run it belongs to), then run the demo again"
    else
        echo "stop the card emulator connected to vpcd port $1 (\`ss -tnp 'dport = :$1'\` shows it), then run the demo again"
    fi
}
stopped() {  # MESSAGE…: stop the demo with a clear message; its own cards leave their readers
    local f
    echo >&2
    echo "DEMO STOPPED: $*" >&2
    for f in "$DEMO"/card.3596[34]; do [ -f "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }; done
    if [ -s "$DEMO/pids" ]; then
        echo "The hub and the kiosks are still running for a look (logs: $DEMO/*.log); end them with: bash Provisioning/demo.sh stop" >&2
    fi
    exit 1
}

# Before anything starts: the virtual readers must be free and empty, the ports free.
# (The test binary itself, not a linker writing it.)
TESTS=$(pgrep -f '^[^ ]*BenefitKioskPackageTests\.xctest( |$)' | tr '\n' ' ' || true)
[ -z "$TESTS" ] || stopped "a test run (BenefitKioskPackageTests.xctest, pid ${TESTS% }) is using the virtual readers. Wait until it ends, then run the demo again."
READERS=$("$BIN/kioskctl" readers --virtual-readers --json) \
    || stopped "kioskctl cannot list the readers: is pcscd running? (bash Provisioning/start-pcscd.sh)"
for port in 35963 35964; do
    name=$(reader_name $port)
    present=$(echo "$READERS" | python3 -c 'import json,sys
r=[r for r in json.load(sys.stdin)["readers"] if r["reader"]==sys.argv[1]]
print("missing" if not r else "true" if r[0]["card_present"] else "false")' "$name")
    holder=$(holder_of $port)
    case $present in
        missing) stopped "reader \"$name\" is missing: pcscd is not running with vpcd (package vsmartcard-vpcd). Restart it: pkill -x pcscd; bash Provisioning/start-pcscd.sh" ;;
        true) stopped "reader \"$name\" already holds a card, so the demo's cards could not reach it. To free the reader, $(free_hint $port)." ;;
    esac
    [ -z "$holder" ] || stopped "reader \"$name\" (vpcd port $port) is taken, so the demo's cards could not reach it. To free the reader, $(free_hint $port)."
done
for port in 8470 8080 8081; do
    user=$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -1)
    [ -z "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] || stopped "port $port is already in use${user:+ by $user}; the demo needs 8470 (hub), 8080 and 8081 (kiosks). Stop that process and run the demo again."
done

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

provision() {  # name device-id institution profile seed help-desk display-name reader
    # The demo devices take the vector seeds so that the vector snapshot's device entries and
    # the hub's roster know their keys; a real device makes its key itself (no seed).
    "$BIN/kioskctl" provision --state-dir "$DEMO/$1" --device-id "$2" --institution "$3" --profile "$4" \
        --issuer-key "$ISSUER" --authority-key "$AUTHORITY" --device-ca-key "$DEVICE_CA" --hub-url "$HUB" \
        --printer "file:$DEMO/$1/receipts/" --region 330782 --reader "$8" --paper 58 --device-key-seed "$5" --help-desk "$6" \
        --display-name "$7" --help-phone "0579-8888 1234" >/dev/null
    # Certification: the device's request goes to the platform, the certificate comes back.
    "$BIN/kioskctl" certificate request --state-dir "$DEMO/$1" >"$DEMO/$1.request"
    "$BIN/device-ca" issue --ca-key "$DEMO/device-ca.key" --ca-key-id 330782-device-ca-test \
        --request "$DEMO/$1.request" --valid-from 20261110 --days 90 --out "$DEMO/$1.cert" 2>/dev/null
    "$BIN/kioskctl" certificate install --state-dir "$DEMO/$1" "$DEMO/$1.cert"
    "$BIN/kioskctl" snapshot install --state-dir "$DEMO/$1" "$SNAPSHOT"
    "$BIN/kioskctl" voice generate --state-dir "$DEMO/$1" >/dev/null || echo "voice prompts not generated (espeak-ng missing)" >&2
}
provision hospital KSK-TEST-0001 330782-H01 hospital x5ltRC+avHN24CoyFoUz5aWKCtIuAPrNcCW5jVKMTqU= "1 号收费窗口" "市第一人民医院" "Virtual PCD 00 00"
provision township KSK-TEST-0002 330782-H02 township MfSiw5nBRJ7StYQeiAl3Ydt9MnY9IfdDsNu9hmzmpD8= "2 号民政窗口" "城关镇便民服务中心" "Virtual PCD 00 01"

"${DETACHED[@]}" "$BIN/settlement-hub" --port 8470 --db "$DEMO/hub.sqlite" --snapshot "$SNAPSHOT" </dev/null >"$DEMO/hub.log" 2>&1 & echo $! >>"$DEMO/pids"
# The demo's kiosks run on the vectors' fixed day (BENEFIT_KIOSK_TEST_NOW above) while the hub
# runs on the real clock: a sync would be refused for the clock (401, clock_suspect), so the
# demo installs its snapshot by hand and syncs nothing. (Sync end to end: README, issue 9.)
"${DETACHED[@]}" "$BIN/kioskd" --state-dir "$DEMO/hospital" --port 8080 --no-sync </dev/null >"$DEMO/hospital.log" 2>&1 & echo $! >>"$DEMO/pids"
"${DETACHED[@]}" "$BIN/kioskd" --state-dir "$DEMO/township" --port 8081 --no-sync </dev/null >"$DEMO/township.log" 2>&1 & echo $! >>"$DEMO/pids"
for port in 8080 8081; do
    up=no
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && { up=yes; break; }; sleep 0.1; done
    [ $up = yes ] || stopped "the kiosk on port $port did not answer /healthz within 10 s (see $DEMO/$([ $port = 8080 ] && echo hospital || echo township).log)"
done

card() {  # present CARD PORT: the card stays in the reader until `pull`; stops the demo if it cannot get there
    local log="$DEMO/card.$2.log" pid rc
    "${DETACHED[@]}" "$BIN/virtual-card" --cards "$CARDS" --card "$1" --port "$2" </dev/null >"$log" 2>&1 &
    pid=$!; echo $pid >"$DEMO/card.$2"
    # virtual-card says "card N in vpcd" once vpcd has talked to it, or exits 3 when the reader
    # is taken (another card connected: vpcd does not talk to it within its 5 s claim timeout).
    for _ in $(seq 1 150); do
        grep -q "card $1 in vpcd" "$log" 2>/dev/null && return 0
        if ! kill -0 $pid 2>/dev/null; then
            rc=0; wait $pid 2>/dev/null || rc=$?
            rm -f "$DEMO/card.$2"
            if [ $rc = 3 ]; then
                stopped "card …${1: -4} could not be put in reader \"$(reader_name "$2")\" (virtual-card exit 3: $(grep -o 'error: .*' "$log" | head -1 | cut -c8-)). To free the reader, $(free_hint "$2")."
            fi
            stopped "virtual-card for card …${1: -4} ended with status $rc: $(tail -1 "$log")"
        fi
        sleep 0.1
    done
    stopped "card …${1: -4} did not reach reader \"$(reader_name "$2")\" within 15 s (see $log)"
}
pull() { kill "$(cat "$DEMO/card.$1")" 2>/dev/null || true; rm -f "$DEMO/card.$1"; sleep 0.8; }
result() {  # STEP PORT CARD_LAST4 CODE: wait for that card's result with that code on a kiosk and print it;
            # stop the demo when the screen shows anything else (another card, another code)
    local s="" shown
    for _ in $(seq 1 100); do
        s=$(curl -fs "http://127.0.0.1:$2/api/state" || true)
        echo "$s" | python3 -c 'import json,sys
s=json.load(sys.stdin); r=s.get("result") or {}
sys.exit(0 if s.get("phase")=="result" and (r.get("card_number") or "").endswith(sys.argv[1]) and r.get("code")==sys.argv[2] else 1)' "$3" "$4" 2>/dev/null && break
        s=""
        sleep 0.1
    done
    if [ -z "$s" ]; then
        shown=$(curl -fs "http://127.0.0.1:$2/api/state" | python3 -c 'import json,sys
s=json.load(sys.stdin); r=s.get("result") or {}
print("phase", s.get("phase"), "· card", r.get("card_number") or "none", "·", r.get("code") or "no result", "·", r.get("message") or "")' 2>/dev/null || echo "no answer")
        stopped "step $1: the screen at http://127.0.0.1:$2/ should show card …$3 with \"$4\" but after 10 s shows: $shown. Is another card in reader \"$( [ "$2" = 8080 ] && reader_name 35963 || reader_name 35964)\"? (\`$BIN/kioskctl readers --virtual-readers\`)"
    fi
    echo "$s" | python3 -c 'import json,sys; s=json.load(sys.stdin); r=s.get("result") or {}; print("  screen:", r.get("code"), "·", r.get("message"), "·", {k: r[k] for k in ("card_number","subsidy_fen","patient_pays_fen","records","receipt","detail","matter") if r.get(k)})'
}

# The screen's own session (issue 20): what the kiosk's browser gets by opening the one-time
# screen URL; 确认, 取消 and legal-aid filing need it (the bill token cannot press them).
screen_session() {  # STATE_DIR PORT → a cookie jar file
    local jar="$1/screen.cookies"
    curl -fs -c "$jar" -o /dev/null "$("$BIN/kioskctl" screen-url --state-dir "$1")" || stopped "the screen URL of $1 did not open a session"
    echo "$jar"
}
confirming() {  # PORT CARD_LAST4: wait for that card's pre-settlement on the screen and print it
    local s=""
    for _ in $(seq 1 100); do
        s=$(curl -fs "http://127.0.0.1:$1/api/state" || true)
        echo "$s" | python3 -c 'import json,sys
s=json.load(sys.stdin); r=s.get("result") or {}
sys.exit(0 if s.get("phase")=="confirm" and (r.get("card_number") or "").endswith(sys.argv[1]) else 1)' "$2" 2>/dev/null && break
        s=""; sleep 0.1
    done
    [ -n "$s" ] || stopped "the screen at http://127.0.0.1:$1/ did not show card …$2's pre-settlement within 10 s"
    echo "$s" | python3 -c 'import json,sys; r=json.load(sys.stdin)["result"]; print("  pre-settlement: bill", r["bill_fen"], "subsidy", r["subsidy_fen"], "patient pays", r["patient_pays_fen"], "(nothing written yet)")'
    # The pre-settlement's number: 确认 names the figures the patient saw (a press meant for
    # earlier figures is refused).
    CONFIRMATION=$(echo "$s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["confirmation"])')
}
HOSPITAL_SCREEN=$(screen_session "$DEMO/hospital" 8080)
TOWNSHIP_SCREEN=$(screen_session "$DEMO/township" 8081)

echo; echo "── 1. hospital: the HIS sends a bill of ¥100.00 for 王秀英, she taps card …0017 and presses 确认"
# The API token a local system sends (Authorization: Bearer): the hospital's bill API token
# is made at provisioning; the township's legal-aid API takes one made the same way.
token() { "$BIN/kioskctl" bill-api-token --state-dir "$1" --create 2>/dev/null || true; }
BILL_AUTH=(); t=$(token "$DEMO/hospital"); [ -z "$t" ] || BILL_AUTH=(-H "Authorization: Bearer $t")
BILL=$(curl -s -XPOST http://127.0.0.1:8080/api/bills "${BILL_AUTH[@]}" -H 'Content-Type: application/json' \
    -d '{"bill_reference":"H01-20261122-000123","bill_fen":10000,"patient_id_number":"330782195603121285"}' -w ' (HTTP %{http_code})' || true)
echo "$BILL"
case $BILL in *"(HTTP 202)") ;; *) stopped "step 1: the hospital kiosk did not take the bill: $BILL" ;; esac
card 3307820000000017 35963; confirming 8080 0017
curl -fs -XPOST -b "$HOSPITAL_SCREEN" -H 'Content-Type: application/json' -d "{\"confirmation\":$CONFIRMATION}" \
    http://127.0.0.1:8080/api/bills/H01-20261122-000123/confirm >/dev/null || stopped "step 1: 确认 was refused"
result 1 8080 0017 granted; pull 35963
echo "  the HIS reads: $(curl -s "${BILL_AUTH[@]}" http://127.0.0.1:8080/api/bills/H01-20261122-000123)"
RECEIPT=$(ls "$DEMO"/hospital/receipts/*.png 2>/dev/null | head -1 || true)
[ -n "$RECEIPT" ] || stopped "step 1: no receipt was printed to $DEMO/hospital/receipts/"
VERIFIED=$("$BIN/kioskctl" receipt verify --state-dir "$DEMO/hospital" "$RECEIPT") || stopped "step 1: the receipt's QR does not verify ($RECEIPT)"
echo "  receipt QR verified: $VERIFIED"
echo; echo "── 2. hospital: 陈桂兰's allowance is stopped (停保): card …0033, no bill"
card 3307820000000033 35963; result 2 8080 0033 person_suspended; pull 35963
echo; echo "── 3. township: 李建国 taps his legal aid card …0025 and applies (labor remuneration); the card consents"
card 3307820000100025 35964; result 3 8081 0025 eligible
APPLIED=$(curl -s -XPOST http://127.0.0.1:8081/api/legal-aid -b "$TOWNSHIP_SCREEN" -H 'Content-Type: application/json' \
    -d '{"matter":"labor_remuneration"}' -w ' (HTTP %{http_code})' || true)
case $APPLIED in *"(HTTP 202)") ;; *) stopped "step 3: the township kiosk did not take the legal-aid application: $APPLIED" ;; esac
result 3 8081 0025 applied; pull 35964
echo; echo "── 4. settlement: the kiosks upload to the local hub"
for _ in $(seq 1 50); do
    q=$(curl -fs http://127.0.0.1:8080/healthz | python3 -c 'import json,sys; print(json.load(sys.stdin)["queued_records"])')
    [ "$q" = 0 ] && break; sleep 0.2
done
"$BIN/kioskctl" queue --state-dir "$DEMO/hospital" | head -5
echo "  hub holds: $(sqlite3 "$DEMO/hub.sqlite" 'select count(*) from hub_record' 2>/dev/null || echo '?') records"

BILL_HINT=""
[ ${#BILL_AUTH[@]} -eq 0 ] || BILL_HINT=" -H \"Authorization: Bearer \$(cat $DEMO/hospital/bill-api.token)\""
cat <<EOT

Where to look
  screens      http://127.0.0.1:8080/ (hospital)   http://127.0.0.1:8081/ (township)
               to press 确认 there, open the one-time URL first: $BIN/kioskctl screen-url --state-dir $DEMO/hospital
               screenshot: chromium --headless --no-sandbox --timeout=3000 --screenshot=s.png http://127.0.0.1:8080/
  receipts     $DEMO/hospital/receipts/  $DEMO/township/receipts/  (.escpos as sent, .png QR, .txt text)
  ledger       $BIN/kioskctl ledger --state-dir $DEMO/hospital ;  kioskctl queue … ;  kioskctl receipt verify FILE.png …
  health       curl http://127.0.0.1:8080/healthz ;  metrics: curl http://127.0.0.1:8080/metrics
  bill API     curl -XPOST http://127.0.0.1:8080/api/bills -H 'Content-Type: application/json'$BILL_HINT -d '{"bill_reference":"B2","bill_fen":5000}'
               then: $BIN/virtual-card --cards $CARDS --card 3307820000000058 --port 35963
  logs         $DEMO/hospital.log  $DEMO/township.log  $DEMO/hub.log
  stop         bash Provisioning/demo.sh stop
EOT
