#!/usr/bin/env bash
# Provisions a kiosk from a filled-in template, on a machine where the benefit-kiosk package
# is installed (docs/install.md, "Install a kiosk", steps 2–3). The package installs this
# script as /usr/sbin/benefit-kiosk-provision:
#   benefit-kiosk-provision --config /etc/benefit-kiosk/hospital.conf [--deb benefit-kiosk_V_ARCH.deb] [--state-dir DIR]
# --deb installs that package first (apt-get install ./FILE, which brings pcscd, libccid,
# cage, chromium, fonts-noto-cjk, espeak-ng, alsa-utils). Nothing is built here: the
# packages come from Provisioning/package.sh on a build machine. Provisioning runs as the
# service user (kioskctl provision: key 0600; re-running keeps the key and never resets the
# record sequence), then the voice prompts are made. It prints the certificate request line
# to send to the platform office and what to do next.
set -euo pipefail
CONFIG='' DEB='' STATE=/var/lib/benefit-kiosk
while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG=${2:-}; shift 2 ;;
        --deb) DEB=${2:-}; shift 2 ;;
        --state-dir) STATE=${2:-}; shift 2 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 64 ;;
    esac
done
[ -n "$CONFIG" ] && [ -f "$CONFIG" ] || { echo "usage: install.sh --config FILE [--deb FILE] (templates: /etc/benefit-kiosk/)" >&2; exit 64; }
# shellcheck disable=SC1090
. "$CONFIG"
for v in DEVICE_ID INSTITUTION PROFILE ISSUER_KEYS AUTHORITY_KEYS DEVICE_CA_KEYS HUB_URL PRINTER REGION; do
    [ -n "${!v:-}" ] || { echo "$CONFIG: $v is not set" >&2; exit 64; }
done
if grep -q REPLACE_WITH "$CONFIG"; then echo "$CONFIG still has REPLACE_WITH placeholders" >&2; exit 64; fi

if [ -n "$DEB" ]; then
    case "$DEB" in /*|./*) ;; *) DEB=./$DEB ;; esac
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$DEB"
fi
command -v kioskctl >/dev/null || { echo "kioskctl is not installed: apt-get install ./benefit-kiosk_….deb (or --deb FILE)" >&2; exit 69; }
AS=(); [ "$(id -u)" -eq 0 ] && id benefit-kiosk >/dev/null 2>&1 && AS=(runuser -u benefit-kiosk --)

args=(provision --state-dir "$STATE" --device-id "$DEVICE_ID" --institution "$INSTITUTION" --profile "$PROFILE"
      --hub-url "$HUB_URL" --printer "$PRINTER" --region "$REGION")
for k in $ISSUER_KEYS; do args+=(--issuer-key "$k"); done
for k in $AUTHORITY_KEYS; do args+=(--authority-key "$k"); done
for k in $DEVICE_CA_KEYS; do args+=(--device-ca-key "$k"); done
[ -n "${HUB_CA:-}" ] && args+=(--hub-ca "$HUB_CA")
[ -n "${READER:-}" ] && args+=(--reader "$READER")
[ -n "${PAPER:-}" ] && args+=(--paper "$PAPER")
# A certificate file from a lab; in production the certificate comes through the hub (step 4).
[ -n "${DEVICE_CERT:-}" ] && args+=(--device-cert "$DEVICE_CERT")
[ -n "${HELP_DESK:-}" ] && args+=(--help-desk "$HELP_DESK")
[ -n "${LEGAL_AID_OFFICE:-}" ] && args+=(--legal-aid-office "$LEGAL_AID_OFFICE")
[ -n "${LEGAL_AID_HOURS:-}" ] && args+=(--legal-aid-hours "$LEGAL_AID_HOURS")
[ -n "${RESULT_SECONDS:-}" ] && args+=(--result-seconds "$RESULT_SECONDS")
[ -n "${CANCEL_SECONDS:-}" ] && args+=(--cancel-seconds "$CANCEL_SECONDS")
[ -n "${VOICE:-}" ] && args+=(--voice "$VOICE")
[ -n "${VOLUME:-}" ] && args+=(--volume "$VOLUME")
[ -n "${DISPLAY_NAME:-}" ] && args+=(--display-name "$DISPLAY_NAME")
[ -n "${HELP_PHONE:-}" ] && args+=(--help-phone "$HELP_PHONE")
"${AS[@]}" kioskctl "${args[@]}"
"${AS[@]}" kioskctl voice generate --state-dir "$STATE" || echo "voice prompts not generated (apt install espeak-ng); the screen stays silent" >&2
cat <<NEXT

next (docs/install.md, "Install a kiosk"):
  4. send the certificate request line above to the district platform office; once it is registered:
       runuser -u benefit-kiosk -- kioskctl certificate renew --state-dir $STATE
  5. systemctl enable --now pcscd.socket benefit-kioskd.service
  6. kioskctl doctor --state-dir $STATE --test-page --sound
  7. kioskctl bill-api-token --state-dir $STATE     (hospital: for the hospital system)
  8. systemctl enable --now benefit-kiosk-browser.service
NEXT
