#!/usr/bin/env bash
# Starts pcscd (with vpcd's virtual readers) when it is not already running; no systemd
# needed. Used by the test and demo commands. Prints the readers it sees.
set -euo pipefail
if pgrep -x pcscd >/dev/null 2>&1 && pcsc_scan -h >/dev/null 2>&1; then :; fi
if ! pgrep -x pcscd >/dev/null 2>&1; then
    mkdir -p /run/pcscd
    log=${PCSCD_LOG:-/tmp/benefit-kiosk-pcscd.log}
    nohup pcscd --foreground --info >"$log" 2>&1 &
    for _ in $(seq 1 100); do
        [ -S /run/pcscd/pcscd.comm ] && break
        sleep 0.05
    done
fi
[ -S /run/pcscd/pcscd.comm ] || { echo "pcscd did not start (see ${PCSCD_LOG:-/tmp/benefit-kiosk-pcscd.log})" >&2; exit 1; }
