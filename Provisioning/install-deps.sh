#!/usr/bin/env bash
# Installs the Debian packages BenefitKiosk needs, only those missing.
#   install-deps.sh run    what a kiosk needs to run
#   install-deps.sh test   + what the tests and demo need (virtual reader, QR reader, compiler)
#   install-deps.sh package  what Provisioning/package.sh needs to make and check the .deb
#                            files (dpkg-deb, dpkg-shlibdeps, objdump, strip, lintian)
set -euo pipefail
want=(pcscd libpcsclite1 libpcsclite-dev libccid libqrencode-dev libsqlite3-dev espeak-ng)
case "${1:-run}" in
    run) ;;
    test) want+=(vsmartcard-vpcd zbar-tools gcc pkg-config chromium fonts-noto-cjk sqlite3 curl openssl sox postgresql) ;;
    package) want=(lintian binutils dpkg-dev) ;;
    *) echo "usage: install-deps.sh [run|test|package]" >&2; exit 64 ;;
esac
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
