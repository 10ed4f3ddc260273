#!/usr/bin/env bash
# Starts pcscd (with vpcd's virtual readers) when it is not already running; no systemd
# needed. Used by the test, benchmark and demo commands. pcscd gets no descriptor of its
# caller's but 0, 1 and 2 (close-fds.sh): run under `flock LOCK …`, it would otherwise
# hold LOCK for as long as it runs.
set -euo pipefail
# A live pcscd (a killed one can linger as a zombie where nothing reaps it).
alive() { pgrep -x pcscd -r R,S,D,I >/dev/null 2>&1; }
if ! alive; then
    mkdir -p /run/pcscd
    rm -f /run/pcscd/pcscd.comm /run/pcscd/pcscd.pid
    log=${PCSCD_LOG:-/tmp/benefit-kiosk-pcscd.log}
    nohup bash "$(dirname "$0")/close-fds.sh" pcscd --foreground --info </dev/null >"$log" 2>&1 &
    for _ in $(seq 1 100); do
        [ -S /run/pcscd/pcscd.comm ] && alive && break
        sleep 0.05
    done
fi
[ -S /run/pcscd/pcscd.comm ] && alive || { echo "pcscd did not start (see ${PCSCD_LOG:-/tmp/benefit-kiosk-pcscd.log})" >&2; exit 1; }
