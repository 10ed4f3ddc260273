#!/usr/bin/env bash
# The card demo (issue 2): on a fresh Debian machine installs what is needed, starts
# pcscd, builds, and presents each of the seven test cards in turn in a virtual reader
# (the project's card emulator over vpcd), reading and authenticating each with kioskctl,
# plus a tampered and a cloned card. Then it leaves card …0017 in the reader so you can
# try kioskctl yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Provisioning/install-deps.sh test
bash Provisioning/start-pcscd.sh
swift build --product kioskctl >/dev/null 2>&1 || swift build --product kioskctl
swift build --product virtual-card >/dev/null 2>&1 || swift build --product virtual-card
BIN=$(swift build --show-bin-path)
CARDS=Provisioning/demo/cards.json
TRUST=Provisioning/demo/trust.json
export BENEFIT_KIOSK_VIRTUAL_READERS=1

present() {   # present CARD_NUMBER [emulator flags…]
    local card=$1; shift
    "$BIN/virtual-card" --cards "$CARDS" --card "$card" "$@" 2>/dev/null &
    local vc=$!
    sleep 1
    echo "───── card $card $* ─────"
    "$BIN/kioskctl" card inspect --trust-file "$TRUST" || echo "(kioskctl exit status $?)"
    kill $vc 2>/dev/null; wait $vc 2>/dev/null || true
    sleep 0.5
}

echo "Readers:"; "$BIN/kioskctl" readers
for c in $("$BIN/virtual-card" --cards "$CARDS" --list | cut -d' ' -f1); do present "$c"; done
present 3307820000000017 --tamper-holder
present 3307820000000017 --wrong-card-key

# It stays: started through close-fds.sh, it keeps no descriptor of ours (a lock, a pipe).
bash Provisioning/close-fds.sh "$BIN/virtual-card" --cards "$CARDS" --card 3307820000000017 </dev/null >/dev/null 2>&1 &
echo
echo "Card 3307820000000017 stays in \"Virtual PCD 00 00\" (virtual-card pid $!). Try:"
echo "  BENEFIT_KIOSK_VIRTUAL_READERS=1 $BIN/kioskctl card inspect --trust-file $TRUST --json"
echo "Stop it with: kill $!"
