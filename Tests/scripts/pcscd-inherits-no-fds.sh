#!/usr/bin/env bash
# Script test (issue 8, item 10): Provisioning/start-pcscd.sh, run under `flock LOCK`
# with pcscd not yet running, must not leave pcscd holding the lock file. Checks that the
# lock is free once the script has returned and that /proc/<pcscd>/fd has no descriptor
# of the lock file.
#
#   bash Tests/scripts/pcscd-inherits-no-fds.sh
#
# It stops the running pcscd (SIGKILL, as the watcher test does: pcscd with vpcd does
# not stop on SIGTERM while vpcd waits) and leaves the one it started running; if it
# fails half-way, it starts pcscd again. Other users of pcscd lose their readers for a
# moment, so it first waits (up to BK_WAIT seconds, default 600) until no test run
# (BenefitKioskPackageTests.xctest) is going. Not part of Provisioning/test.sh for that
# reason. START_PCSCD=FILE tests another copy of the script (e.g. an older one).
set -euo pipefail
cd "$(dirname "$0")/../.."
START=${START_PCSCD:-Provisioning/start-pcscd.sh}
command -v flock >/dev/null || { echo "SKIP: flock (util-linux) not installed"; exit 77; }
alive() { pgrep -x pcscd -r R,S,D,I >/dev/null 2>&1; }

waited=0
while pgrep -f BenefitKioskPackageTests.xctest >/dev/null; do
    [ "$waited" -ge "${BK_WAIT:-600}" ] && { echo "FAIL: tests still use pcscd after ${waited}s; run this again later" >&2; exit 1; }
    [ "$waited" = 0 ] && echo "waiting for the running tests (BenefitKioskPackageTests.xctest) to end…"
    sleep 5; waited=$((waited + 5))
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/bk-pcscd-fds.XXXXXX")
lock=$dir/lock
restore() {
    # Whatever happened, leave a pcscd running for the other users.
    alive || bash Provisioning/start-pcscd.sh >/dev/null 2>&1 || echo "warning: could not start pcscd again" >&2
    rm -rf "$dir"
}
trap restore EXIT

# pcscd not yet running.
if alive; then
    pkill -9 -x pcscd || true
    for _ in $(seq 1 100); do alive || break; sleep 0.05; done
    alive && { echo "FAIL: could not stop the running pcscd" >&2; exit 1; }
fi

# Under the lock: flock opens LOCK, takes it and runs the command with that descriptor open.
timeout 30 flock "$lock" bash "$START"
pid=$(pgrep -n -x pcscd -r R,S,D,I) || { echo "FAIL: $START did not start pcscd" >&2; exit 1; }

fail=0
if timeout 5 flock -n "$lock" true; then
    echo "ok: the lock is free after $START returned"
else
    echo "FAIL: the lock is still held after $START returned" >&2; fail=1
fi
held=""
for f in /proc/"$pid"/fd/*; do
    [ "$(readlink "$f" 2>/dev/null)" = "$lock" ] && held="$held ${f##*/}"
done
if [ -z "$held" ]; then
    echo "ok: pcscd (pid $pid) holds no descriptor of the lock file"
else
    echo "FAIL: pcscd (pid $pid) holds the lock file as fd$held" >&2; fail=1
fi
[ "$fail" = 0 ] && echo "PASS"
exit "$fail"
