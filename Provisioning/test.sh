#!/usr/bin/env bash
# THE TEST COMMAND (README, .ci/run): on a fresh Debian machine installs what the tests
# need, starts its own pcscd (with vpcd's virtual readers), builds, and runs every unit
# and integration test. Integration tests talk to real pcscd + vpcd + the card emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
# The hub's second engine (issue 12): a throwaway PostgreSQL server of this run's own, in a
# new folder on a free port, stopped and removed at exit. A server left by benchmarks or by
# another checkout on the same machine (the default folder and port) is never touched.
export BK_PG_DIR
BK_PG_DIR=$(mktemp -d /tmp/bk-test-pg.XXXXXX)
stop_postgres() {
    local as=(); [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
    "${as[@]}" "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/pg_ctl" -D "$BK_PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$BK_PG_DIR"
}
trap stop_postgres EXIT
PG_URL=$(BK_PG_PORT=auto bash Provisioning/start-postgres.sh)
swift build --build-tests
# Programs a crashed earlier run left behind are stopped first: a kioskd of an old test on the
# virtual readers reads every card the integration tests insert, and its APDUs interleave
# with theirs (seen on this machine: SELECT answered 6985 after a run had crashed).
pkill -f -- "--state-dir ${TMPDIR:-/tmp}/benefit-kiosk-tests-" 2>/dev/null || true
# The codebase's shape against issue 22's targets: fails on a file over 600 lines, a function
# over 80, a second hex/RFC 3339/line reader/JSON scanner, a dependency the module map lacks, …
python3 Tests/scripts/shape.py --check
# BK_TEST_RESTART_PCSCD=1: the watcher test may kill and restart pcscd.
BK_TEST_RESTART_PCSCD=1 swift test --skip-build "$@"
# The hub's suites again, on PostgreSQL: each test in a schema of its own (issue 12).
if [ $# -eq 0 ]; then
    BK_TEST_POSTGRES="$PG_URL" swift test --skip-build --filter SettlementTests
fi
# A short libFuzzer run of every parser that takes outside bytes (Fuzz/README.md): 20 s a
# target, its own sanitizer build in .build-fuzz; any crash fails the command. Skipped when
# the tests were filtered (arguments given), as when a developer runs one suite.
if [ $# -eq 0 ]; then
    bash Fuzz/run.sh 20
fi
