#!/usr/bin/env bash
# The README's screenshots (issue 10): every sample screen at 1024×768 and two of them at
# every panel size, from kioskd --preview-screens in headless Chromium, at half scale.
# The tests (ScreenAuditTests) take and check all of them at full size in .build/test-screens/.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --product kioskd >/dev/null
BIN=$(swift build --show-bin-path)
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
OUT=docs/screens
mkdir -p "$OUT"
names=$("$BIN/kioskd" --preview-screens "$DIR")
shot() {  # name width height
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --lang=zh-CN --virtual-time-budget=2000 \
        --force-device-scale-factor=0.5 --window-size="$2,$3" --screenshot="$OUT/$1-$2x$3.png" "file://$DIR/$1.html" 2>/dev/null
}
for n in $names; do shot "$n" 1024 768; done
for size in "1080 1920" "1920 1080" "1280 1024"; do
    for n in hospital-granted township-eligible; do shot "$n" $size; done
done
ls "$OUT"
