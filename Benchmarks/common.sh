# Sourced by the benchmark scripts (bash, set -euo pipefail): the repository root as the
# working folder; `build PRODUCT…` (a release build in $SCRATCH, default .build, and BIN, the
# folder of its binaries); `scratch NAME` (DIR, a temporary folder removed on exit);
# `at_exit COMMAND` (run on exit, before DIR goes); `stats RATIO…` ("median M (range A–B)").
cd "$(dirname "${BASH_SOURCE[1]}")/.."
SCRATCH=${SCRATCH:-.build}
DIR=
EXIT_COMMANDS=()
# SWIFT_BUILD_FLAGS (e.g. --static-swift-stdlib, with SCRATCH=.build-release: the packages'
# build, reused) are added to every build.
build() {
    # shellcheck disable=SC2086
    for p in "$@"; do swift build -c release ${SWIFT_BUILD_FLAGS:-} --product "$p" --scratch-path "$SCRATCH" >/dev/null; done
    # shellcheck disable=SC2086
    BIN=$(swift build -c release ${SWIFT_BUILD_FLAGS:-} --scratch-path "$SCRATCH" --show-bin-path)
}
scratch() { DIR=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX"); }
at_exit() { EXIT_COMMANDS+=("$1"); }
on_exit() {
    for c in "${EXIT_COMMANDS[@]}"; do eval "$c" 2>/dev/null || true; done
    if [ -n "$DIR" ]; then rm -rf "$DIR"; fi
}
trap on_exit EXIT
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "median %s (range %s–%s)", a[int((NR+1)/2)], a[1], a[NR]}'; }
# p50 of a named line of the benches' format ("c NAME … p50_us=X …", "swift NAME …").
p50() { sed -n "s/^$1 $2 .*p50_us=\([0-9.]*\).*/\1/p"; }
ratio() { echo "scale=2; $1 / $2" | bc; }

# The card benches' device (needs `build kioskctl` and `scratch`): the vector device
# KSK-TEST-0001 with its key and certificate, provisioned in STATE with the vector snapshot, at
# the vectors' instant; sets ISSUER, SEED, CERT, TEMPLATE (write-vectors' usage object).
card_device() {
    local keys=Sources/TestVectors/Fixtures/test-keys.json
    key() { python3 -c "import json; d = json.load(open('$keys')); print($1)"; }
    SEED=$(key "d['devices']['KSK-TEST-0001']['private_seed']")
    CERT=$(key "d['devices']['KSK-TEST-0001']['certificate']")
    ISSUER=$(key "d['issuer']['key_id'] + '=' + d['issuer']['public_key']")
    TEMPLATE=$(python3 -c "import json; print(json.load(open('Sources/TestVectors/Fixtures/write-vectors.json'))['write']['usage_object'])")
    echo "$CERT" >"$DIR/device.cert"
    export BENEFIT_KIOSK_TEST_NOW=2026-11-22T03:00:00Z
    "$BIN/kioskctl" provision --state-dir "$1" --device-id KSK-TEST-0001 --institution 330782-H01 --profile hospital \
        --issuer-key "$ISSUER" --authority-key "$(key "d['authority']['key_id'] + '=' + d['authority']['public_key']")" \
        --device-ca-key "$(key "d['device_ca']['key_id'] + '=' + d['device_ca']['public_key']")" \
        --device-key-seed "$SEED" --device-cert "$DIR/device.cert" \
        --hub-url http://127.0.0.1:9 --printer "file:$DIR/receipts/" --region 330782 >/dev/null
    "$BIN/kioskctl" snapshot install --state-dir "$1" Provisioning/demo/snapshot-small.jsonl >/dev/null
}
# The demo's card ...0017 (medical, authentic, eligible) in "Virtual PCD 00 00" until exit
# (needs pcscd: Provisioning/start-pcscd.sh, and `build virtual-card`). TIMING=fast|slow
# gives it a real card's timing (virtual-card --timing, issue 24).
start_virtual_card() {
    "$BIN/virtual-card" --cards Provisioning/demo/cards.json --card 3307820000000017 ${TIMING:+--timing "$TIMING"} 2>/dev/null &
    at_exit "kill $!"
    sleep 1.5
}
# PostgreSQL for the hub benchmarks (needs `scratch` first for nothing; root runs psql as
# postgres): PG_URL of the project's own server (started when down), and `psql_ SQL`.
start_postgres() {
    PG_URL=$(bash Provisioning/start-postgres.sh)
    PG_DIR=${BK_PG_DIR:-/tmp/benefit-kiosk-postgres}
    PG_PORT=${BK_PG_PORT:-54329}
    AS=(); [ "$(id -u)" -eq 0 ] && AS=(runuser -u postgres --)
}
psql_() { "${AS[@]}" psql -q -o /dev/null -h "$PG_DIR" -p "$PG_PORT" -d benefit_kiosk_test -tAc "$1"; }

# measure_hub NAME KIOSKS STORAGE-ARGS…: starts settlement-hub on that store (roster of load
# kiosks in $DIR/roster.jsonl), lets KIOSKS kiosks drain copies of $DIR/queued to it, stops it;
# prints "seconds_to_listen rss_after_start_mb peak_rss_mb records_per_second".
measure_hub() {
    local name=$1 kiosks=$2; shift 2
    local t0; t0=$(date +%s.%N)
    "$BIN/settlement-hub" serve --port 0 --log-level error --snapshot "$DIR/roster.jsonl" "$@" >"$DIR/$name.out" 2>"$DIR/$name.err" &
    local pid=$!; at_exit "kill $pid"
    for _ in $(seq 6000); do grep -q "listening on" "$DIR/$name.out" 2>/dev/null && break; sleep 0.02; done
    local up; up=$(echo "$(date +%s.%N) - $t0" | bc)
    local url; url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$DIR/$name.out")
    local rss0; rss0=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    rm -rf "$DIR/kiosks"; cp -r "$DIR/queued" "$DIR/kiosks"
    local out; out=$("$BIN/kiosk-bench" hub-load run --hub "$url" --kiosks "$kiosks" --batch 50 --dir "$DIR/kiosks")
    local rss1; rss1=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$up $rss0 $rss1 $(echo "$out" | sed -n 's/.*records_per_second=\([0-9.]*\).*/\1/p')"
}
