#!/usr/bin/env bash
# Makes the Debian packages of BenefitKiosk, the production way to install it (in place of
# Provisioning/install.sh, which builds on the kiosk):
#   package.sh [--bin-dir DIR] [--out DIR] [--version V]
#     benefit-kiosk_V_ARCH.deb  kioskd, kioskctl, their units, the reader rules, the users
#                               benefit-kiosk and kiosk-screen, the state folder, /etc/benefit-kiosk
#     benefit-hub_V_ARCH.deb    settlement-hub, hub-publisher, device-ca, the district and province
#                               units, the users settlement-hub and hub-publisher, their folders
# Without --bin-dir it builds the release binaries first (swift build -c release
# --static-swift-stdlib --scratch-path .build-release, one product per call); --bin-dir DIR
# takes them from DIR instead (e.g. .build-release/release). A binary holding a test hook
# (the string BENEFIT_KIOSK_TEST_) is refused. The binaries are stripped; Depends come from
# their NEEDED libraries (dpkg-shlibdeps) and what the units and scripts run; the packages
# are made with dpkg-deb --root-owner-group (no debhelper, no fakeroot) and checked with
# lintian. It prints the .deb files, their sizes, Depends and lintian's findings, and exits
# non-zero on a lintian error (E:) that no override covers.
#   --out DIR       where the .deb files go (default: dist/)
#   --version V     the Debian version ("-1" is added when V has no revision). Default, from
#                   git: a tag vX.Y.Z on HEAD gives X.Y.Z-1, N commits after it
#                   X.Y.Z+gitYYYYMMDD.N.HASH-1; with no tag, 0.I.0~gitYYYYMMDD.HASH-1, I the
#                   issue of CHANGELOG.md's newest entry (a snapshot before release 0.I.0).
#                   YYYYMMDD is the commit's date (UTC); "+dirty" is added when tracked files
#                   differ from HEAD.
#   MAINTAINER="Name <mail>" sets the Maintainer field (default: the author of HEAD).
# Packaging files: Provisioning/deb/ (maintainer scripts, conffiles, lintian overrides with
# their reasons, man pages, screen.env, README.Debian), Provisioning/systemd/ (units,
# sysusers.d, tmpfiles.d), Provisioning/province/ (the province's units).
# Needs: bash Provisioning/install-deps.sh package (dpkg-dev, binutils, lintian).
# Check the packages installed: Provisioning/package-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022
export LC_ALL=C.UTF-8

BIN_DIR='' OUT=dist VERSION=''
die() { echo "package.sh: $*" >&2; exit 1; }
usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir|--out|--version)
            if [ $# -lt 2 ] || [ -z "$2" ]; then echo "$1 needs a value" >&2; exit 64; fi
            case "$1" in --bin-dir) BIN_DIR=$2 ;; --out) OUT=$2 ;; --version) VERSION=$2 ;; esac
            shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option $1" >&2; usage >&2; exit 64 ;;
    esac
done

KIOSK_BINS=(kioskd kioskctl)
HUB_BINS=(settlement-hub hub-publisher device-ca)
missing=()
for t in dpkg-deb dpkg-shlibdeps dpkg-architecture strip objdump lintian gzip; do
    command -v "$t" >/dev/null || missing+=("$t")
done
[ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}: run bash Provisioning/install-deps.sh package"

WORK=$(mktemp -d /tmp/benefit-package.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# 1. The release binaries.
if [ -z "$BIN_DIR" ]; then
    command -v swift >/dev/null || die "swift is not on PATH (or give --bin-dir)"
    # One product per call: `swift build` keeps only the last of several --product options.
    for p in "${KIOSK_BINS[@]}" "${HUB_BINS[@]}"; do
        echo "building $p (release, static Swift runtime)…"
        swift build -c release --static-swift-stdlib --scratch-path .build-release --product "$p" >"$WORK/build.log" 2>&1 \
            || { tail -40 "$WORK/build.log" >&2; die "swift build of $p failed"; }
    done
    BIN_DIR=$(swift build -c release --static-swift-stdlib --scratch-path .build-release --show-bin-path)
fi
[ -d "$BIN_DIR" ] || die "--bin-dir $BIN_DIR is not a folder"
BIN_DIR=$(cd "$BIN_DIR" && pwd)
for b in "${KIOSK_BINS[@]}" "${HUB_BINS[@]}"; do
    [ -f "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing"
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is not executable"
    # Release binaries carry no test hook (issue 8): a debug build's would let a clock be set.
    if grep -aq BENEFIT_KIOSK_TEST_ "$BIN_DIR/$b"; then
        die "$BIN_DIR/$b reads test hooks ($(grep -aoE 'BENEFIT_KIOSK_TEST_[A-Z_]+' "$BIN_DIR/$b" | sort -u | paste -sd ' ' -)): a debug build, or a hook outside #if BENEFIT_KIOSK_TEST_HOOKS; not packaged"
    fi
done

# 2. Version, architecture, maintainer, the date every file gets (reproducible builds).
git_version() {
    local date hash desc base n issue
    hash=$(git rev-parse --short=7 HEAD)
    date=$(TZ=UTC git log -1 --date=format-local:%Y%m%d --format=%cd HEAD)
    if desc=$(git describe --tags --long --match 'v[0-9]*' 2>/dev/null); then
        base=${desc%-*-g*}; base=${base#v}
        n=${desc%-g*}; n=${n##*-}
        if [ "$n" = 0 ]; then echo -n "$base"; else echo -n "$base+git$date.$n.$hash"; fi
    else
        issue=$(sed -n 's/^## .*(issue \([0-9][0-9]*\).*/\1/p' CHANGELOG.md | head -1)
        echo -n "0.${issue:-0}.0~git$date.$hash"
    fi
    git diff --quiet HEAD -- 2>/dev/null || echo -n "+dirty"
    echo
}
HAVE_GIT=no
git rev-parse --verify -q HEAD >/dev/null 2>&1 && HAVE_GIT=yes
if [ -z "$VERSION" ]; then
    [ $HAVE_GIT = yes ] || die "not a git checkout: give --version"
    VERSION=$(git_version)
fi
case $VERSION in *-*) ;; *) VERSION=$VERSION-1 ;; esac
dpkg --validate-version "$VERSION" >/dev/null 2>&1 || die "$VERSION is not a valid Debian version"
ARCH=$(dpkg --print-architecture)
if [ $HAVE_GIT = yes ]; then
    MAINT=${MAINTAINER:-$(git log -1 --format='%an <%ae>')}
    COMMIT=$(git rev-parse --short=7 HEAD)
    : "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct)}"
else
    MAINT=${MAINTAINER:-BenefitKiosk maintainers <benefit-kiosk@example.invalid>}
    COMMIT=unknown
    : "${SOURCE_DATE_EPOCH:=$(date +%s)}"
fi
# dpkg-deb clamps every file's time in the package to it.
export SOURCE_DATE_EPOCH
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "version $VERSION, $ARCH, binaries from $BIN_DIR"

# 3. Documentation shared by both packages.
# The Swift packages the binaries are linked with, statically (their checkouts).
CHECKOUTS=
d=$BIN_DIR
for _ in 1 2 3 4; do
    d=$(dirname "$d")
    if [ -d "$d/checkouts" ]; then CHECKOUTS=$d/checkouts; break; fi
done
[ -n "$CHECKOUTS" ] || { [ -d .build-release/checkouts ] && CHECKOUTS=$PWD/.build-release/checkouts; } || true
[ -n "$CHECKOUTS" ] || echo "warning: no checkouts/ beside $BIN_DIR: the copyright file will not list the Swift packages" >&2
SWIFT_LICENSE=
if command -v swift >/dev/null; then
    SWIFT_LICENSE=$(dirname "$(readlink -f "$(command -v swift)")")/../share/swift/LICENSE.txt
    [ -f "$SWIFT_LICENSE" ] || SWIFT_LICENSE=
fi

license_of() {  # DIR: the SPDX-style name of a checkout's license
    local f
    f=$(find "$1" -maxdepth 1 -iname 'LICENSE*' | sort | head -1)
    if [ -z "$f" ]; then echo unknown
    elif grep -q "Apache License" "$f" && grep -q "Version 2.0" "$f"; then echo Apache-2.0
    elif grep -q "Permission is hereby granted, free of charge" "$f"; then echo Expat
    else echo "other-$(basename "$1")"
    fi
}
copyright_of() {  # DIR: its copyright lines, from NOTICE or LICENSE
    local lines
    lines=$(cat "$1"/NOTICE* "$1"/LICENSE* 2>/dev/null | grep -E '^[[:space:]]*Copyright[[:space:]]+(\([cC]\)|©|[0-9])' \
        | grep -v 'yyyy' | sed 's/^[[:space:]]*Copyright[[:space:]]*\(([cC])\|©\)\{0,1\}[[:space:]]*//' | sort -u | head -3 || true)
    [ -n "$lines" ] || lines="the $(basename "$1") authors"
    echo "$lines" | sed '2,$s/^/ /'
}
copyright_file() {  # PACKAGE
    local year dep lic
    year=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
    cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: BenefitKiosk
Upstream-Contact: $MAINT
Comment: The binaries are linked statically with the Swift runtime and
 Foundation (with ICU) of the Swift toolchain and with the Swift packages
 listed below (each binary with those it uses). Their notices, as Apache-2.0
 section 4(d) asks, are in /usr/share/doc/$1/third-party-notices.gz.

Files: *
Copyright: $year BenefitKiosk maintainers
License: proprietary

Files: swift-toolchain/*
Copyright: 2014-$year Apple Inc. and the Swift project authors
License: Apache-2.0 with Swift Runtime Library Exception
Comment: The Swift standard library, Dispatch and Foundation, linked statically
 (--static-swift-stdlib).

Files: swift-foundation-icu/*
Copyright: 1991-$year Unicode, Inc. and others
License: Unicode-3.0
Comment: ICU, linked statically as part of Foundation.
EOF
    if [ -n "$CHECKOUTS" ]; then
        for dep in "$CHECKOUTS"/*/; do
            dep=${dep%/}
            lic=$(license_of "$dep")
            printf '\nFiles: %s/*\nCopyright: %s\nLicense: %s\n' "$(basename "$dep")" "$(copyright_of "$dep")" "$lic"
            case $lic in
                other-*|unknown)
                    find "$dep" -maxdepth 1 -iname 'LICENSE*' | sort | head -1 | xargs -r cat \
                        | sed 's/^[[:space:]]*$/./; s/^/ /' ;;
            esac
        done
    fi
    # zlib, vendored inside swift-nio-extras (linked into kioskd and kioskctl; lintian's
    # embedded-library).
    if [ -n "$CHECKOUTS" ] && [ -d "$CHECKOUTS/swift-nio-extras/Sources/CNIOExtrasZlib" ]; then
        cat <<'EOF'

Files: swift-nio-extras/Sources/CNIOExtrasZlib/*
Copyright: 1995-2026 Jean-loup Gailly and Mark Adler
License: Zlib
 This software is provided 'as-is', without any express or implied
 warranty. In no event will the authors be held liable for any damages
 arising from the use of this software.
 .
 Permission is granted to anyone to use this software for any purpose,
 including commercial applications, and to alter it and redistribute it
 freely, subject to the following restrictions:
 .
 1. The origin of this software must not be misrepresented; you must not
    claim that you wrote the original software. If you use this software
    in a product, an acknowledgment in the product documentation would be
    appreciated but is not required.
 2. Altered source versions must be plainly marked as such, and must not be
    misrepresented as being the original software.
 3. This notice may not be removed or altered from any source distribution.
EOF
    fi
    cat <<'EOF'

License: proprietary
 The source tree holds no license file and its README names no license: all
 rights are reserved by the authors. No license to copy, modify or
 redistribute this software is granted.

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License"); you may not
 use this file except in compliance with the License. You may obtain a copy
 of the License at http://www.apache.org/licenses/LICENSE-2.0
 .
 Unless required by applicable law or agreed to in writing, software
 distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
 WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
 License for the specific language governing permissions and limitations
 under the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0
 can be found in "/usr/share/common-licenses/Apache-2.0".

License: Apache-2.0 with Swift Runtime Library Exception
 The Apache License, Version 2.0 (above; on Debian systems in
 "/usr/share/common-licenses/Apache-2.0"), with this exception:
 .
 As an exception, if you use this Software to compile your source code and
 portions of this Software are embedded into the binary product as a result,
 you may redistribute such product without providing attribution as would
 otherwise be required by Sections 4(a), 4(b) and 4(d) of the License.

License: Expat
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to
 deal in the Software without restriction, including without limitation the
 rights to use, copy, modify, merge, publish, distribute, sublicense, and/or
 sell copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
 FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS
 IN THE SOFTWARE.

License: Unicode-3.0
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of data files and any associated documentation (the "Data Files") or
 software and any associated documentation (the "Software") to deal in the
 Data Files or Software without restriction, including without limitation
 the rights to use, copy, modify, merge, publish, distribute, and/or sell
 copies of the Data Files or Software, and to permit persons to whom the Data
 Files or Software are furnished to do so, provided that either (a) this
 copyright and permission notice appear with all copies of the Data Files or
 Software, or (b) this copyright and permission notice appear in associated
 Documentation.
 .
 THE DATA FILES AND SOFTWARE ARE PROVIDED "AS IS", WITHOUT WARRANTY OF ANY
 KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
 MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT OF
 THIRD PARTY RIGHTS. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR HOLDERS
 INCLUDED IN THIS NOTICE BE LIABLE FOR ANY CLAIM, OR ANY SPECIAL INDIRECT OR
 CONSEQUENTIAL DAMAGES, OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS OF USE,
 DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE OR OTHER
 TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR PERFORMANCE
 OF THE DATA FILES OR SOFTWARE.
 .
 Except as contained in this notice, the name of a copyright holder shall not
 be used in advertising or otherwise to promote the sale, use or other
 dealings in these Data Files or Software without prior written
 authorization of the copyright holder.
EOF
}
third_party_notices() {  # every dependency's NOTICE, and its license unless Apache-2.0 (in common-licenses)
    local dep f
    echo "Third-party notices of the software linked statically into the BenefitKiosk binaries."
    if [ -n "$SWIFT_LICENSE" ]; then
        printf '\n==== The Swift toolchain (runtime, Dispatch, Foundation) ====\n\n'
        cat "$SWIFT_LICENSE"
    fi
    [ -n "$CHECKOUTS" ] || return 0
    for dep in "$CHECKOUTS"/*/; do
        dep=${dep%/}
        printf '\n==== %s (%s) ====\n' "$(basename "$dep")" "$(license_of "$dep")"
        find "$dep" -maxdepth 1 -iname 'NOTICE*' | sort | while read -r f; do printf '\n'; cat "$f"; done
        if [ "$(license_of "$dep")" != Apache-2.0 ]; then
            find "$dep" -maxdepth 1 -iname 'LICENSE*' | sort | while read -r f; do printf '\n'; cat "$f"; done
        fi
        # Licenses of code vendored inside a package (llhttp in swift-nio, …).
        find "$dep/Sources" -mindepth 2 -maxdepth 3 -iname 'LICENSE*' 2>/dev/null | sort | while read -r f; do
            printf '\n-- %s --\n\n' "${f#"$CHECKOUTS"/}"; cat "$f"
        done
    done
}
changelog_debian() {  # PACKAGE
    cat <<EOF
$1 ($VERSION) bookworm; urgency=medium

  * Built by Provisioning/package.sh from git commit $COMMIT.
  * What changed, issue by issue: /usr/share/doc/$1/changelog.gz.

 -- $MAINT  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
EOF
}

# 4. Staging: debian/PACKAGE/ (where dpkg-shlibdeps expects a package's files).
stage_common() {  # PACKAGE DIR: documentation, copyright, changelogs, maintainer scripts, overrides
    local pkg=$1 d=$2 doc=$2/usr/share/doc/$1 s
    install -d "$doc/docs" "$d/DEBIAN"
    install -m 0644 README.md "$doc/"
    install -m 0644 docs/*.md "$doc/docs/"
    install -m 0644 "Provisioning/deb/$pkg/README.Debian" "$doc/"
    gzip -9n <CHANGELOG.md >"$doc/changelog.gz"
    changelog_debian "$pkg" | gzip -9n >"$doc/changelog.Debian.gz"
    copyright_file "$pkg" >"$doc/copyright"
    third_party_notices | gzip -9n >"$doc/third-party-notices.gz"
    if [ -f "Provisioning/deb/$pkg/lintian-overrides" ]; then
        install -D -m 0644 "Provisioning/deb/$pkg/lintian-overrides" "$d/usr/share/lintian/overrides/$pkg"
    fi
    for s in postinst prerm postrm; do install -m 0755 "Provisioning/deb/$pkg/$s" "$d/DEBIAN/"; done
    install -m 0644 "Provisioning/deb/$pkg/conffiles" "$d/DEBIAN/"
}
stage_bins() {  # DIR BINARY…: installed, stripped (as dh_strip does), and seen to run
    local d=$1 b
    shift
    install -d "$d/usr/bin"
    for b in "$@"; do
        install -m 0755 "$BIN_DIR/$b" "$d/usr/bin/$b"
        strip --remove-section=.comment --remove-section=.note "$d/usr/bin/$b"
        "$d/usr/bin/$b" --help >/dev/null 2>&1 || die "$b does not run once stripped ($d/usr/bin/$b --help)"
    done
}
stage_units() {  # DIR UNIT_FILE…
    local d=$1 u
    shift
    install -d "$d/usr/lib/systemd/system"
    for u in "$@"; do
        if grep -q '/usr/local/' "$u"; then die "$u still names /usr/local/: the package installs in /usr/bin"; fi
        install -m 0644 "$u" "$d/usr/lib/systemd/system/"
    done
}
stage_man() {  # DIR PAGE…
    local d=$1 p s
    shift
    for p in "$@"; do
        s=${p##*.}
        install -d "$d/usr/share/man/man$s"
        gzip -9n <"Provisioning/deb/man/$p" >"$d/usr/share/man/man$s/$p.gz"
    done
}
finish() {  # PACKAGE DIR DEPENDS SUGGESTS DESCRIPTION: control, md5sums, the .deb
    local pkg=$1 d=$2 f listed
    # Every file in /etc is a conffile, and every conffile is shipped.
    listed=$(sort "$d/DEBIAN/conffiles")
    [ "$listed" = "$(cd "$d" && find etc -type f 2>/dev/null | sed 's|^|/|' | sort)" ] \
        || die "$pkg: DEBIAN/conffiles ($listed) is not the files shipped in /etc"
    find "$d" -type d -exec chmod 0755 {} +
    cat >"$d/DEBIAN/control" <<EOF
Package: $pkg
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINT
Installed-Size: $(du -sk --exclude=DEBIAN "$d" | cut -f1)
Depends: $3
Suggests: $4
Section: admin
Priority: optional
Description: $5
EOF
    (cd "$d" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$d/DEBIAN/md5sums"
    chmod 0644 "$d/DEBIAN/md5sums" "$d/DEBIAN/control"
    f=$OUT/${pkg}_${VERSION}_$ARCH.deb
    dpkg-deb --root-owner-group -Zxz --build "$d" "$f" >/dev/null
    DEBS+=("$f")
}
shlib_depends() {  # PACKAGE BINARY…: the libraries' packages, with versions (dpkg-shlibdeps)
    local pkg=$1 out b
    shift
    mkdir -p "$WORK/debian"
    printf 'Source: benefitkiosk\nMaintainer: %s\n\nPackage: %s\nArchitecture: any\n' "$MAINT" "$pkg" >"$WORK/debian/control"
    for b in "$@"; do
        echo "  $b NEEDED: $(objdump -p "$WORK/debian/$pkg/usr/bin/$b" | awk '/NEEDED/ {print $2}' | tr '\n' ' ')" >&2
    done
    out=$(cd "$WORK" && dpkg-shlibdeps -O "${@/#/-edebian/$pkg/usr/bin/}" 2>"$WORK/shlibdeps.err") \
        || { cat "$WORK/shlibdeps.err" >&2; die "dpkg-shlibdeps failed for $pkg"; }
    grep -v 'should already be installed' "$WORK/shlibdeps.err" >&2 || true
    echo "${out#shlibs:Depends=}"
}

DEBS=()
SYSUSERS_DEPS="systemd | systemd-sysusers, systemd | systemd-tmpfiles"

# benefit-kiosk
K=$WORK/debian/benefit-kiosk
stage_bins "$K" "${KIOSK_BINS[@]}"
# kioskd's screens: Bundle.module looks for the bundle beside the executable
# (Bundle.main.bundleURL/BenefitKiosk_kioskd.resources, else the build folder it was built in),
# and kioskd stops (fatalError) when neither exists. The files go to /usr/share/benefit-kiosk/;
# /usr/bin holds a symbolic link to them (the FHS allows no folder in /usr/bin).
RES=
for r in "$BIN_DIR/BenefitKiosk_kioskd.resources" "$BIN_DIR"/*_kioskd.resources; do
    if [ -d "$r" ]; then RES=$r; break; fi
done
[ -n "$RES" ] || die "kioskd's resource bundle (*_kioskd.resources) is not in $BIN_DIR"
RES_NAME=$(basename "$RES")
grep -aq "$RES_NAME" "$BIN_DIR/kioskd" || die "kioskd does not name $RES_NAME: where does it look for its screens?"
install -d "$K/usr/share/benefit-kiosk"
cp -RL "$RES" "$K/usr/share/benefit-kiosk/$RES_NAME"
find "$K/usr/share/benefit-kiosk" -type f -exec chmod 0644 {} +
ln -s "../share/benefit-kiosk/$RES_NAME" "$K/usr/bin/$RES_NAME"
stage_units "$K" Provisioning/systemd/benefit-kioskd.service Provisioning/systemd/benefit-kiosk-browser.service
install -d "$K/usr/lib/udev/rules.d"
install -m 0644 Hardware/udev/*.rules "$K/usr/lib/udev/rules.d/"
install -D -m 0644 Provisioning/systemd/benefit-kiosk.sysusers "$K/usr/lib/sysusers.d/benefit-kiosk.conf"
install -D -m 0644 Provisioning/systemd/benefit-kiosk.tmpfiles "$K/usr/lib/tmpfiles.d/benefit-kiosk.conf"
install -d "$K/etc/benefit-kiosk"
install -m 0644 Provisioning/config/hospital.conf Provisioning/config/township.conf \
    Provisioning/deb/benefit-kiosk/screen.env "$K/etc/benefit-kiosk/"
# The template-driven provisioning (Provisioning/install.sh) as a command of the package.
install -D -m 0755 Provisioning/install.sh "$K/usr/sbin/benefit-kiosk-provision"
stage_man "$K" kioskd.8 kioskctl.8 benefit-kiosk-provision.8
stage_common benefit-kiosk "$K"
echo "benefit-kiosk:"
KIOSK_SHLIBS=$(shlib_depends benefit-kiosk "${KIOSK_BINS[@]}")
# pcscd and libccid: the readers; cage, chromium, fonts-noto-cjk: the screen; espeak-ng: the
# voice prompts; alsa-utils: aplay (kioskctl doctor --sound); curl: the browser unit's wait.
finish benefit-kiosk "$K" \
    "$KIOSK_SHLIBS, $SYSUSERS_DEPS, pcscd, libccid, cage, chromium, fonts-noto-cjk, espeak-ng, alsa-utils, curl" \
    "vsmartcard-vpcd, zbar-tools" \
    "BenefitKiosk terminal for social-assistance smart cards
 The software of the Linux terminals where the Huimin medical card and the
 legal aid card are used. kioskd reads and authenticates the cards through
 PC/SC, decides offline from a signed snapshot, writes usage to the card,
 prints signed receipts, serves the kiosk's screen and uploads settlement
 records to the settlement hub; kioskctl provisions and looks after the
 device.
 .
 The package holds the systemd units (the daemon, and the screen: Chromium
 under the cage compositor), the reader udev rules, the system users and the
 state folder. Nothing runs until the device is provisioned."

# benefit-hub
H=$WORK/debian/benefit-hub
stage_bins "$H" "${HUB_BINS[@]}"
stage_units "$H" Provisioning/systemd/settlement-hub.service Provisioning/systemd/hub-publisher.service \
    Provisioning/province/settlement-hub@.service Provisioning/province/hub-publisher-province.service
install -D -m 0644 Provisioning/systemd/benefit-hub.sysusers "$H/usr/lib/sysusers.d/benefit-hub.conf"
install -D -m 0644 Provisioning/systemd/benefit-hub.tmpfiles "$H/usr/lib/tmpfiles.d/benefit-hub.conf"
install -D -m 0644 Provisioning/province/province.env.example "$H/etc/benefit-hub/province.env.example"
stage_man "$H" settlement-hub.8 hub-publisher.8 device-ca.1
stage_common benefit-hub "$H"
install -m 0644 Provisioning/province/BACKUP.md "$H/usr/share/doc/benefit-hub/"
echo "benefit-hub:"
HUB_SHLIBS=$(shlib_depends benefit-hub "${HUB_BINS[@]}")
finish benefit-hub "$H" "$HUB_SHLIBS, $SYSUSERS_DEPS" "postgresql-client" \
    "BenefitKiosk platform: settlement hub and snapshot publisher
 settlement-hub takes the signed settlement records that BenefitKiosk
 terminals upload and serves them their region's snapshots and device
 certificates, on SQLite (a district) or PostgreSQL (a province).
 hub-publisher holds the authority and device-CA keys and signs the
 snapshots and certificates; device-ca is the reference device CA for labs
 and tests."

# 5. What was made, and lintian.
echo
for f in "${DEBS[@]}"; do
    echo "$f  $(du -h "$f" | cut -f1) ($(stat -c %s "$f") bytes; installed $(dpkg-deb -f "$f" Installed-Size) KiB)"
    echo "  Depends: $(dpkg-deb -f "$f" Depends)"
done
echo
echo "lintian (E error, W warning, I info, O overridden):"
rc=0
# (--fail-on none: lintian 2.116 counts overridden errors for --fail-on error; its E: lines,
# the errors no override covers, decide below.)
lintian --display-info --show-overrides --fail-on none "${DEBS[@]}" >"$WORK/lintian.raw" 2>&1 || rc=$?
# Without its notice about running as root, and the overrides' comments (printed below).
grep -v -e "running with root privileges is not recommended" -e "^N: " "$WORK/lintian.raw" >"$WORK/lintian.out" || true
if [ -s "$WORK/lintian.out" ]; then
    # E, W and I lines as they are; overridden ones counted by package and tag.
    grep -v '^O: ' "$WORK/lintian.out" | sed 's/^/  /' || true
    awk '/^O: / { n[$2 " " $3]++ } END { for (k in n) printf "  O: %s (%d)\n", k, n[k] }' "$WORK/lintian.out" | sort
else
    echo "  clean"
fi
for pkg in benefit-kiosk benefit-hub; do
    o=Provisioning/deb/$pkg/lintian-overrides
    if [ -f "$o" ]; then
        echo "overrides shipped in $pkg (/usr/share/lintian/overrides/$pkg), with their reasons:"
        sed 's/^/  /' "$o"
    fi
done
if [ "$rc" -ne 0 ]; then
    die "lintian failed (exit $rc)"
fi
if grep -q '^E: ' "$WORK/lintian.out"; then
    die "lintian reports errors no override covers (E:): the packages are in $OUT but must not be shipped"
fi
echo "lintian: no error that an override does not cover"
