#!/usr/bin/env bash
# Checks the Debian packages on a machine of the kind they are for (Debian 12, as root;
# systemd need not be running):
#   package-check.sh [DEB_DIR] [--remove] [--virtual-card PATH]
# Installs the newest benefit-kiosk_*.deb and benefit-hub_*.deb of DEB_DIR (default dist/,
# where Provisioning/package.sh puts them) with apt-get, which brings their dependencies;
# checks the users, groups, folders and files the packages make; starts pcscd with vpcd's
# virtual readers; then, with the INSTALLED programs only, each as its package's user:
# starts a settlement hub (/usr/bin/settlement-hub) on a free port, provisions a kiosk into a
# temporary state folder with the demo's TEST keys (Provisioning/demo.sh), certifies it with
# /usr/bin/device-ca, installs the demo snapshot, puts demo card …0017 on reader
# "Virtual PCD 00 00" (virtual-card of the release build), runs `kioskctl check` and
# `kioskctl doctor` (reported as missing when this kioskctl has none), and starts kioskd to see
# it serve its screen from the packaged resource bundle.
# Every step is printed with its time, and the total at the end; the first failure stops it
# with a non-zero status. At exit the card, kioskd and the hub are stopped and the temporary
# folders removed (pcscd keeps running, as after the demo and the tests). The packages stay
# installed; --remove removes them at exit (apt-get remove: the users and /var/lib stay).
#   --virtual-card PATH   the card emulator (default: .build-release/release/virtual-card)
# The demo snapshot is signed for a fixed period (Provisioning/demo/snapshot-small.jsonl,
# expires_at 2027-01-31T00:00:00Z) and release binaries have no test clock: once that period
# is over (or with PACKAGE_CHECK_FRESH_SNAPSHOT=1), the check installs a copy issued now for
# 30 days, signed again with the TEST authority key (Sources/TestVectors/Fixtures/
# test-keys.json; Ed25519 over the SHA-256 of the lines before the trailer, snapshot spec §1).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export LC_ALL=C.UTF-8

DEB_DIR=dist REMOVE=no VIRTUAL_CARD=$REPO/.build-release/release/virtual-card
while [ $# -gt 0 ]; do
    case "$1" in
        --remove) REMOVE=yes; shift ;;
        --virtual-card)
            if [ $# -lt 2 ] || [ -z "$2" ]; then echo "--virtual-card needs a path" >&2; exit 64; fi
            VIRTUAL_CARD=$2; shift 2 ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 64 ;;
        *) DEB_DIR=$1; shift ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "package-check.sh installs packages: run it as root" >&2; exit 64; }

# The TEST keys of the card spec vectors, as Provisioning/demo.sh uses them. Never in production.
ISSUER=330782-issuer-test=ccFN/6AgIzeALsTdT7e3Eyw+Wdaz4PSJiYy/wU1agY8=
AUTHORITY=330782-auth-test=oYIOYJP8glBE21IWS59YdxSMi796YEYlgjPf3cEJoaU=
DEVICE_CA=330782-device-ca-test=bdK55oarEcW5mSXaMeBL4YG7xjN613TKeTVzVEnAJx0=
DEVICE_CA_SEED=RU+SUV1gBN6+zB+2ArPfAmDcM0ltGprnYaTYOegoBvU=
# KSK-TEST-0001's seed: the vector snapshot's device entry knows its key (as in the demo).
DEVICE_SEED=x5ltRC+avHN24CoyFoUz5aWKCtIuAPrNcCW5jVKMTqU=
REGION=330782
CARD=3307820000000017
READER="Virtual PCD 00 00" READER_PORT=35963
SNAPSHOT=$REPO/Provisioning/demo/snapshot-small.jsonl
CARDS=$REPO/Provisioning/demo/cards.json

T0=$EPOCHREALTIME STEP_T0=$EPOCHREALTIME STEP=0 STEP_NAME="start"
TMP='' HUB_PID='' KIOSKD_PID='' CARD_PID=''
secs() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
step() {  # the previous step's time, then the next step's title
    [ "$STEP" -eq 0 ] || echo "   ok ($(secs "$STEP_T0") s)"
    STEP=$((STEP + 1)) STEP_NAME=$* STEP_T0=$EPOCHREALTIME
    printf '%2d. [%6s s] %s\n' "$STEP" "$(secs "$T0")" "$*"
}
fail() { echo "   FAILED: $*" >&2; exit 1; }
stop_pid() {  # PID: SIGTERM, then SIGKILL after 5 s
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    stop_pid "$CARD_PID"; stop_pid "$KIOSKD_PID"; stop_pid "$HUB_PID"
    [ -z "$TMP" ] || rm -rf "$TMP"
    if [ "$REMOVE" = yes ]; then
        echo "removing the packages (--remove)…"
        DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq benefit-kiosk benefit-hub >/dev/null 2>&1 \
            || echo "apt-get remove failed" >&2
    fi
    if [ $rc -eq 0 ]; then
        echo "package check passed: $STEP steps in $(secs "$T0") s"
    else
        echo "package check FAILED at step $STEP ($STEP_NAME) after $(secs "$T0") s (status $rc)" >&2
    fi
}
trap cleanup EXIT
# As a package's user, the way its unit runs it: that user's uid, gid and groups, a clean
# environment (no test variable gets through).
as_user() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --init-groups --reset-env -- "$@"; }
# The same for a background program: `spawn_as USER PROGRAM … &`. The background subshell
# becomes the program (exec), so $! is the program's pid and stopping it stops the program.
spawn_as() { local u=$1; shift; exec setpriv --reuid="$u" --regid="$u" --init-groups --reset-env -- "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() {  # URL SECONDS PID: until URL answers (any status); fails when PID ends first
    for _ in $(seq 1 $(($2 * 10))); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" != 000 ] && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
expect_mode() {  # PATH MODE OWNER GROUP
    local got
    got=$(stat -c '%a %U %G' "$1" 2>/dev/null) || fail "$1 is missing"
    [ "$got" = "$2 $3 $4" ] || fail "$1 is $got, not $2 $3 $4"
    echo "   $1: $got"
}

# 1. The packages.
step "install the packages from $DEB_DIR with apt-get"
newest() { find "$DEB_DIR" -maxdepth 1 -name "$1_*_$(dpkg --print-architecture).deb" -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-; }
KIOSK_DEB=$(newest benefit-kiosk) HUB_DEB=$(newest benefit-hub)
if [ -z "$KIOSK_DEB" ] || [ -z "$HUB_DEB" ]; then
    fail "no benefit-kiosk_*.deb and benefit-hub_*.deb in $DEB_DIR (bash Provisioning/package.sh)"
fi
KIOSK_DEB=$(readlink -f "$KIOSK_DEB") HUB_DEB=$(readlink -f "$HUB_DEB")
echo "   $KIOSK_DEB"
echo "   $HUB_DEB"
for p in benefit-kiosk benefit-hub; do
    was=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null || true)
    case $was in "install ok installed "*) echo "   $p ${was##* } already installed: reinstalled (maintainer scripts run as on an upgrade)" ;; esac
done
TMP=$(mktemp -d /tmp/benefit-package-check.XXXXXX)
chmod 0711 "$TMP"   # the packages' users reach their own folders below it
install_debs() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "$KIOSK_DEB" "$HUB_DEB" >"$TMP/apt.log" 2>&1
}
if ! install_debs; then
    echo "   apt-get install failed; updating the package lists and trying again"
    apt-get update -qq >/dev/null 2>&1 || true
    install_debs || { tail -30 "$TMP/apt.log" >&2; fail "apt-get install failed"; }
fi
echo "   $(grep -c '^Setting up ' "$TMP/apt.log") packages set up; what the packages' scripts said:"
grep -E '^(Setting up benefit-|benefit-)' "$TMP/apt.log" | sed 's/^/     /' || true
for p in benefit-kiosk benefit-hub; do
    s=$(dpkg-query -W -f='${Status} ${Version}' "$p")
    case $s in "install ok installed "*) echo "   $p ${s##* }" ;; *) fail "$p is $s" ;; esac
done

# 2. What the packages made.
step "users, groups, folders and files"
for u in benefit-kiosk kiosk-screen settlement-hub hub-publisher; do
    getent passwd "$u" >/dev/null || fail "no user $u"
    echo "   $u: $(id "$u")"
done
in_groups() {  # USER GROUP…
    local u=$1 g have
    shift
    have=" $(id -nG "$u") "
    for g in "$@"; do case $have in *" $g "*) ;; *) fail "$u is not in group $g (groups:$have)" ;; esac; done
}
in_groups benefit-kiosk lp kiosk-screen
in_groups kiosk-screen audio video
in_groups hub-publisher settlement-hub
expect_mode /var/lib/benefit-kiosk 700 benefit-kiosk benefit-kiosk
expect_mode /var/lib/settlement-hub 770 settlement-hub settlement-hub
expect_mode /var/lib/hub-publisher 700 hub-publisher hub-publisher
expect_mode /var/lib/hub-publisher/archive 700 hub-publisher hub-publisher
expect_mode /etc/hub-publisher 700 hub-publisher hub-publisher
expect_mode /etc/settlement-hub 750 root settlement-hub
for b in kioskd kioskctl settlement-hub hub-publisher device-ca; do
    [ -x /usr/bin/$b ] || fail "/usr/bin/$b is missing"
    if grep -aq BENEFIT_KIOSK_TEST_ /usr/bin/$b; then fail "/usr/bin/$b holds test hooks"; fi
    man -w "$b" >/dev/null 2>&1 || fail "no manual page for $b"
done
[ -r /usr/bin/BenefitKiosk_kioskd.resources/Screens/index.html ] || fail "kioskd's screens are not beside it (/usr/bin/BenefitKiosk_kioskd.resources)"
for f in /etc/benefit-kiosk/hospital.conf /etc/benefit-kiosk/township.conf /etc/benefit-kiosk/screen.env \
         /etc/benefit-hub/province.env.example /usr/lib/udev/rules.d/60-benefit-kiosk-readers.rules; do
    [ -f "$f" ] || fail "$f is missing"
done
UNITS=(benefit-kioskd.service benefit-kiosk-browser.service settlement-hub.service hub-publisher.service
       settlement-hub@.service hub-publisher-province.service)
for u in "${UNITS[@]}"; do
    f=/usr/lib/systemd/system/$u
    [ -f "$f" ] || fail "$f is missing"
    if grep -q /usr/local/ "$f"; then fail "$f still names /usr/local/"; fi
done
echo "   binaries, screens, manual pages, conffiles, udev rules and ${#UNITS[@]} units in place"
# systemd's own reading of the units (no running systemd needed); settlement-hub@ as an instance.
verify=()
for u in "${UNITS[@]}"; do
    case $u in *@.service) verify+=("/usr/lib/systemd/system/${u%@.service}@8471.service") ;; *) verify+=("/usr/lib/systemd/system/$u") ;; esac
done
if command -v systemd-analyze >/dev/null; then
    if ! SYSTEMD_LOG_LEVEL=err systemd-analyze verify --man=no "${verify[@]}" >"$TMP/verify.log" 2>&1; then
        sed 's/^/     /' "$TMP/verify.log" >&2; fail "systemd-analyze verify found errors in the units"
    fi
    echo "   systemd-analyze verify: no errors"
fi

# 3. pcscd with vpcd's virtual readers, and the reader free.
step "pcscd with virtual readers; reader \"$READER\" empty and free"
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
TESTS=$(pgrep -f '^[^ ]*BenefitKioskPackageTests\.xctest( |$)' | tr '\n' ' ' || true)
[ -z "$TESTS" ] || fail "a test run (BenefitKioskPackageTests.xctest, pid ${TESTS% }) is using the virtual readers; run the check when it has ended"
present=$(as_user benefit-kiosk /usr/bin/kioskctl readers --virtual-readers --json | python3 -c 'import json, sys
r = [r for r in json.load(sys.stdin)["readers"] if r["reader"] == sys.argv[1]]
print("missing" if not r else "true" if r[0]["card_present"] else "false")' "$READER") \
    || fail "kioskctl readers failed (as benefit-kiosk)"
case $present in
    missing) fail "reader \"$READER\" is missing: pcscd is not running with vpcd (vsmartcard-vpcd)" ;;
    true) fail "reader \"$READER\" already holds a card (another card emulator: ss -tnp 'dport = :$READER_PORT')" ;;
esac
[ -z "$(ss -Htn "dport = :$READER_PORT" 2>/dev/null)" ] || fail "vpcd port $READER_PORT is taken: $(ss -Htnp "dport = :$READER_PORT" | head -1)"
echo "   \"$READER\" is there and empty (kioskctl readers, as benefit-kiosk)"

# 4. A settlement hub, as the kiosk's hub (the packaged binary, as its user).
step "settlement-hub (installed) on a free port, as settlement-hub"
install -d -o settlement-hub -g settlement-hub -m 0770 "$TMP/hub"
install -m 0644 "$SNAPSHOT" "$TMP/roster.jsonl"
HUB_PORT=$(free_port)
spawn_as settlement-hub /usr/bin/settlement-hub --host 127.0.0.1 --port "$HUB_PORT" --db "$TMP/hub/hub.sqlite" \
    --snapshot "$TMP/roster.jsonl" </dev/null >"$TMP/hub.log" 2>&1 &
HUB_PID=$!
wait_http "http://127.0.0.1:$HUB_PORT/v1/health" 20 "$HUB_PID" || { tail -20 "$TMP/hub.log" >&2; fail "the hub did not answer within 20 s"; }
echo "   http://127.0.0.1:$HUB_PORT/v1/health: $(curl -s "http://127.0.0.1:$HUB_PORT/v1/health" | head -c 300)"

# 5. Provisioning, as the README.Debian says: as benefit-kiosk.
step "kioskctl provision, certificate (device-ca), voice prompts, as benefit-kiosk"
STATE=$TMP/kiosk
install -d -o benefit-kiosk -g benefit-kiosk -m 0700 "$STATE"
as_user benefit-kiosk /usr/bin/kioskctl provision --state-dir "$STATE" --device-id KSK-TEST-0001 --institution 330782-H01 \
    --profile hospital --issuer-key "$ISSUER" --authority-key "$AUTHORITY" --device-ca-key "$DEVICE_CA" \
    --hub-url "http://127.0.0.1:$HUB_PORT" --printer "file:$STATE/receipts/" --region "$REGION" \
    --device-key-seed "$DEVICE_SEED" --help-desk "1 号收费窗口" --display-name "市第一人民医院" \
    --help-phone "0579-8888 1234" | sed 's/^/   /'
as_user benefit-kiosk /usr/bin/kioskctl certificate request --state-dir "$STATE" >"$TMP/request.json"
( umask 077; echo "$DEVICE_CA_SEED" >"$TMP/device-ca.key" )
# The platform's side: the reference device CA, valid from today for 90 days.
/usr/bin/device-ca issue --ca-key "$TMP/device-ca.key" --ca-key-id 330782-device-ca-test --request "$TMP/request.json" \
    --days 90 --out "$TMP/kiosk.cert" 2>&1 | sed 's/^/   /'
chmod 0644 "$TMP/kiosk.cert"
as_user benefit-kiosk /usr/bin/kioskctl certificate install --state-dir "$STATE" "$TMP/kiosk.cert" | sed 's/^/   /'
as_user benefit-kiosk /usr/bin/kioskctl voice generate --state-dir "$STATE" | sed 's/^/   /'

# 6. The snapshot: the demo's while it is valid, else a copy issued now, signed again.
step "kioskctl snapshot install"
expires=$(head -1 "$SNAPSHOT" | python3 -c 'import json, sys; print(json.load(sys.stdin)["expires_at"])')
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
if [[ "$now" < "$expires" ]] && [ "${PACKAGE_CHECK_FRESH_SNAPSHOT:-0}" != 1 ]; then
    install -m 0644 "$SNAPSHOT" "$TMP/snapshot.jsonl"
    echo "   the demo snapshot (expires $expires)"
else
    # The header and records (a new header: issued now, for 30 days), their SHA-256, and the
    # TEST authority key as openssl reads an Ed25519 key: the PKCS#8 wrapping of its seed (RFC 8410).
    ( umask 077; python3 - "$SNAPSHOT" "$REPO/Sources/TestVectors/Fixtures/test-keys.json" "$TMP" ) <<'PY'
import base64, datetime, hashlib, json, sys
snapshot, keys, tmp = sys.argv[1:4]
lines = open(snapshot, encoding="utf-8").read().splitlines()
header, records = json.loads(lines[0]), lines[1:-1]
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
z = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
header.update(issued_at=z(now), settled_through=z(now - datetime.timedelta(minutes=1)),
              expires_at=z(now + datetime.timedelta(days=30)))
body = "".join(line + "\n" for line in [json.dumps(header, ensure_ascii=False, separators=(",", ":"))] + records).encode()
open(f"{tmp}/snapshot.body", "wb").write(body)
open(f"{tmp}/digest.bin", "wb").write(hashlib.sha256(body).digest())
open(f"{tmp}/records", "w").write(str(len(records)))
seed = base64.b64decode(json.load(open(keys))["authority"]["private_seed"])
open(f"{tmp}/authority.der", "wb").write(bytes.fromhex("302e020100300506032b657004220420") + seed)
PY
    openssl pkeyutl -sign -inkey "$TMP/authority.der" -keyform DER -rawin -in "$TMP/digest.bin" -out "$TMP/signature.bin"
    rm -f "$TMP/authority.der"
    { cat "$TMP/snapshot.body"
      printf '{"type":"trailer","records":%d,"sha256":"%s","signature":"%s"}\n' "$(cat "$TMP/records")" \
          "$(od -An -tx1 -v "$TMP/digest.bin" | tr -d ' \n')" "$(base64 -w0 "$TMP/signature.bin")"
    } >"$TMP/snapshot.jsonl"
    chmod 0644 "$TMP/snapshot.jsonl"
    echo "   the demo snapshot's records, issued now for 30 days and signed with the TEST authority key"
    echo "   (the demo's expires $expires; now $now)"
fi
as_user benefit-kiosk /usr/bin/kioskctl snapshot install --state-dir "$STATE" "$TMP/snapshot.jsonl" | sed 's/^/   /'

# 7. A card on the reader, then kioskctl check.
step "card …${CARD: -4} on \"$READER\" (virtual-card), kioskctl check, as benefit-kiosk"
[ -x "$VIRTUAL_CARD" ] || fail "$VIRTUAL_CARD is missing (the release build's virtual-card; or --virtual-card PATH)"
bash Provisioning/close-fds.sh "$VIRTUAL_CARD" --cards "$CARDS" --card "$CARD" --port "$READER_PORT" \
    </dev/null >"$TMP/card.log" 2>&1 &
CARD_PID=$!
for _ in $(seq 1 150); do
    grep -q "card $CARD in vpcd" "$TMP/card.log" 2>/dev/null && break
    kill -0 "$CARD_PID" 2>/dev/null || { cat "$TMP/card.log" >&2; fail "virtual-card ended (exit 3: the reader is taken)"; }
    sleep 0.1
done
grep -q "card $CARD in vpcd" "$TMP/card.log" || fail "the card did not reach \"$READER\" within 15 s ($(tail -1 "$TMP/card.log"))"
rc=0
as_user benefit-kiosk /usr/bin/kioskctl check --state-dir "$STATE" --virtual-readers --reader "$READER" >"$TMP/check.out" 2>&1 || rc=$?
sed 's/^/   /' "$TMP/check.out"
[ $rc -eq 0 ] || fail "kioskctl check exited $rc (0 is eligible)"
grep -q '^eligible' "$TMP/check.out" || fail "kioskctl check did not say eligible"

# 8. kioskctl doctor.
step "kioskctl doctor, as benefit-kiosk"
if as_user benefit-kiosk /usr/bin/kioskctl doctor --help >/dev/null 2>&1; then
    rc=0
    as_user benefit-kiosk /usr/bin/kioskctl doctor --state-dir "$STATE" --virtual-readers >"$TMP/doctor.out" 2>&1 || rc=$?
    sed 's/^/   /' "$TMP/doctor.out"
    echo "   kioskctl doctor exited $rc"
    [ $rc -eq 0 ] || fail "kioskctl doctor exited $rc"
else
    echo "   kioskctl doctor: not in this kioskctl (\`kioskctl doctor --help\` is refused): skipped, not a failure"
fi
stop_pid "$CARD_PID"; CARD_PID=''

# 9. kioskd from the package serves its screen (the resource bundle found through /usr/bin).
step "kioskd (installed) serves its screen, as benefit-kiosk"
KIOSKD_PORT=$(free_port)
spawn_as benefit-kiosk /usr/bin/kioskd --state-dir "$STATE" --port "$KIOSKD_PORT" --no-sync --no-upload \
    --virtual-readers --reader "Virtual PCD 00 01" </dev/null >"$TMP/kioskd.log" 2>&1 &
KIOSKD_PID=$!
wait_http "http://127.0.0.1:$KIOSKD_PORT/healthz" 20 "$KIOSKD_PID" || { tail -20 "$TMP/kioskd.log" >&2; fail "kioskd did not answer within 20 s"; }
echo "   /healthz: $(curl -s -w ' (HTTP %{http_code})' "http://127.0.0.1:$KIOSKD_PORT/healthz" | head -c 400)"
code=$(curl -s -o "$TMP/index.html" -w '%{http_code}' "http://127.0.0.1:$KIOSKD_PORT/")
if [ "$code" != 200 ] || ! grep -qi '<html' "$TMP/index.html"; then
    tail -20 "$TMP/kioskd.log" >&2; fail "GET / answered $code, not the screen"
fi
echo "   GET /: 200, $(wc -c <"$TMP/index.html") bytes of screen"
stop_pid "$KIOSKD_PID"; KIOSKD_PID=''
echo "   ok ($(secs "$STEP_T0") s)"
