#!/usr/bin/env bash
# Installs BenefitKiosk on a Debian 12 kiosk:
#   install.sh --config Provisioning/config/hospital.conf [--prefix /usr/local] [--no-systemd] [--root DIR]
# Installs the Debian packages it needs, builds release binaries, installs them, the udev
# rules and the systemd units, creates the service user and state folder (0700), and
# provisions the device from the config (kioskctl provision: key 0600; re-running keeps
# the key and never resets the record sequence). --root installs into a folder (tests).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG= PREFIX=/usr/local SYSTEMD=1 ROOT=
while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG=$2; shift 2 ;;
        --prefix) PREFIX=$2; shift 2 ;;
        --no-systemd) SYSTEMD=0; shift ;;
        --root) ROOT=$2; SYSTEMD=0; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 64 ;;
    esac
done
[ -n "$CONFIG" ] && [ -f "$CONFIG" ] || { echo "usage: install.sh --config FILE (see Provisioning/config/)" >&2; exit 64; }
# shellcheck disable=SC1090
. "$CONFIG"
for v in DEVICE_ID INSTITUTION PROFILE ISSUER_KEYS AUTHORITY_KEYS DEVICE_CA_KEYS HUB_URL PRINTER; do
    [ -n "${!v:-}" ] || { echo "$CONFIG: $v is not set" >&2; exit 64; }
done
if grep -q REPLACE_WITH "$CONFIG"; then echo "$CONFIG still has REPLACE_WITH placeholders" >&2; exit 64; fi

bash Provisioning/install-deps.sh run
# One product per call: `swift build` keeps only the last of several --product options.
for p in kioskd kioskctl settlement-hub; do
    swift build -c release --product "$p" >/dev/null 2>&1 || swift build -c release --product "$p"
done
BIN=$(swift build -c release --show-bin-path)
# Release binaries carry no test hook (issue 8): refuse to install one that does.
for b in kioskd kioskctl; do
    if grep -aq BENEFIT_KIOSK_TEST_ "$BIN/$b"; then echo "$BIN/$b holds test hooks: not installed" >&2; exit 1; fi
done
install -d "$ROOT$PREFIX/bin" "$ROOT$PREFIX/share/doc/benefit-kiosk"
install -m 0755 "$BIN/kioskd" "$BIN/kioskctl" "$BIN/settlement-hub" "$ROOT$PREFIX/bin/"
# kioskd's screens are a resource bundle beside the binary.
cp -r "$BIN"/BenefitKiosk_kioskd.resources "$ROOT$PREFIX/bin/" 2>/dev/null || true
install -m 0644 README.md "$ROOT$PREFIX/share/doc/benefit-kiosk/"
install -d "$ROOT/etc/udev/rules.d" "$ROOT/etc/systemd/system"
install -m 0644 Hardware/udev/*.rules "$ROOT/etc/udev/rules.d/"
install -m 0644 Provisioning/systemd/*.service "$ROOT/etc/systemd/system/"

STATE="$ROOT/var/lib/benefit-kiosk"
# The screen's browser runs as kiosk-screen; the screen's one-time URL is readable by its group.
if [ -z "$ROOT" ] && ! getent group kiosk-screen >/dev/null; then groupadd --system kiosk-screen; fi
if [ -z "$ROOT" ] && ! id kiosk-screen >/dev/null 2>&1; then
    useradd --system --gid kiosk-screen --groups audio,video --home-dir /nonexistent --shell /usr/sbin/nologin kiosk-screen
fi
if [ -z "$ROOT" ] && ! id benefit-kiosk >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/benefit-kiosk --shell /usr/sbin/nologin --groups lp,kiosk-screen benefit-kiosk
fi
install -d -m 0700 "$STATE"
args=(provision --state-dir "$STATE" --device-id "$DEVICE_ID" --institution "$INSTITUTION" --profile "$PROFILE"
      --hub-url "$HUB_URL" --printer "$PRINTER")
for k in $ISSUER_KEYS; do args+=(--issuer-key "$k"); done
for k in $AUTHORITY_KEYS; do args+=(--authority-key "$k"); done
for k in $DEVICE_CA_KEYS; do args+=(--device-ca-key "$k"); done
[ -n "${HUB_CA:-}" ] && args+=(--hub-ca "$HUB_CA")
# The device makes its key here; without DEVICE_CERT, provision prints the certificate
# request for the platform, and the kiosk grants nothing (device_retired) until installed.
[ -n "${DEVICE_CERT:-}" ] && args+=(--device-cert "$DEVICE_CERT")
# What the screen tells people (issue 10): the counter, the legal-aid office and its hours,
# how long a result stays, the voice.
[ -n "${HELP_DESK:-}" ] && args+=(--help-desk "$HELP_DESK")
[ -n "${LEGAL_AID_OFFICE:-}" ] && args+=(--legal-aid-office "$LEGAL_AID_OFFICE")
[ -n "${LEGAL_AID_HOURS:-}" ] && args+=(--legal-aid-hours "$LEGAL_AID_HOURS")
[ -n "${RESULT_SECONDS:-}" ] && args+=(--result-seconds "$RESULT_SECONDS")
[ -n "${CANCEL_SECONDS:-}" ] && args+=(--cancel-seconds "$CANCEL_SECONDS")
[ -n "${VOICE:-}" ] && args+=(--voice "$VOICE")
[ -n "${VOLUME:-}" ] && args+=(--volume "$VOLUME")
# Issue 20: the institution's name as people know it, and the help counter's phone.
[ -n "${DISPLAY_NAME:-}" ] && args+=(--display-name "$DISPLAY_NAME")
[ -n "${HELP_PHONE:-}" ] && args+=(--help-phone "$HELP_PHONE")
"$ROOT$PREFIX/bin/kioskctl" "${args[@]}"
# The voice prompts, made offline now (recorded WAVs of the same names put in
# $STATE/voice beforehand are kept; kioskctl voice list names them).
"$ROOT$PREFIX/bin/kioskctl" voice generate --state-dir "$STATE" || echo "voice prompts not generated (apt install espeak-ng); the screen stays silent" >&2
[ -z "$ROOT" ] && chown -R benefit-kiosk:benefit-kiosk "$STATE"

if [ "$SYSTEMD" = 1 ] && [ -d /run/systemd/system ]; then
    udevadm control --reload && udevadm trigger || true
    systemctl daemon-reload
    systemctl enable --now pcscd.socket benefit-kioskd.service
    echo "enabled benefit-kioskd; screen: systemctl enable --now benefit-kiosk-browser (needs cage, chromium)"
else
    echo "installed without systemd; start: $PREFIX/bin/kioskd --state-dir /var/lib/benefit-kiosk"
fi
echo "next: kioskctl snapshot install SNAPSHOT.jsonl --state-dir /var/lib/benefit-kiosk"
