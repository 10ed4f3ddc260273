#!/usr/bin/env python3
"""The codebase's shape (issue 22): prints each figure against its target.

    python3 Tests/scripts/shape.py            # report
    python3 Tests/scripts/shape.py --check    # exit 1 when a target is missed

Figures (Sources/ only, generated and vendored code excluded):
- source files over 600 lines;
- functions over 80 lines (a `func`/`init` whose body's braces close more than 80 lines on);
- library modules whose public declarations carry a doc comment (`///` or `/** */` just above);
- library modules importing ArgumentParser among the hub's (SettlementHub and any Hub* module);
- places that implement hex, RFC 3339 or line reading, by their signatures.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SOURCES = os.path.join(ROOT, "Sources")
EXECUTABLES = {"kioskd", "kioskctl", "settlement-hub", "hub-publisher", "device-ca", "virtual-card", "kiosk-bench", "bk-fuzz", "rest-floor"}
SYSTEM = {"CPCSCLite", "CQREncode"}
MAX_FILE, MAX_FUNC, DOC_TARGET = 600, 80, 0.90

# Signatures of the one-of-each helpers (issue 22: one implementation each, in the contract module).
ONE_OF_EACH = {
    "hex": re.compile(r'"%02x"|"0123456789abcdef"|String\(format: "%02[xX]"|func hex'),
    "rfc3339": re.compile(r'ISO8601DateFormatter\(|ISO8601FormatStyle|func (isRFC3339|rfc3339)\b'),
    "line reading": re.compile(r'func (lines|eachLine|readLines)\b|firstIndex\(of: (0x0A|UInt8\(ascii: "\\n"\))\)'),
}


def swift_files(module_dir):
    for base, _, names in os.walk(module_dir):
        for n in sorted(names):
            if n.endswith(".swift"):
                yield os.path.join(base, n)


def functions_over(text, limit):
    """(name, lines) of each func/init whose body spans more than `limit` lines."""
    out = []
    lines = text.split("\n")
    decl = re.compile(r'^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|private|fileprivate|internal|package|static|final|override|mutating|nonisolated|convenience|required|@inlinable|@discardableResult)\s+)*(func\s+[^\s(<]+|init[?!]?)\s*[(<]')
    i = 0
    while i < len(lines):
        m = decl.match(lines[i])
        if not m:
            i += 1
            continue
        depth, started, j = 0, False, i
        while j < len(lines):
            code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', lines[j].split("//")[0])
            for ch in code:
                if ch == "{":
                    depth += 1
                    started = True
                elif ch == "}":
                    depth -= 1
            if started and depth <= 0:
                break
            if not started and j > i + 10:
                break  # a protocol requirement: no body
            j += 1
        if started and j - i + 1 > limit:
            out.append((m.group(1), j - i + 1))
        i += 1
    return out


def public_declarations(text):
    """(documented, total) public declarations."""
    lines = text.split("\n")
    documented = total = 0
    decl = re.compile(r'^\s*(?:@[\w()".: ,]+\s+)*(?:public|open)\s+(?:(?:static|final|override|mutating|nonisolated|convenience|required|private\(set\)|internal\(set\))\s+)*(func|init|var|let|struct|class|enum|protocol|actor|typealias|case|subscript|extension)\b')
    for k, line in enumerate(lines):
        m = decl.match(line)
        if not m or m.group(1) == "extension":
            continue
        total += 1
        j = k - 1
        while j >= 0 and re.match(r'^\s*@', lines[j]):
            j -= 1
        if j >= 0 and (lines[j].strip().startswith("///") or lines[j].strip().endswith("*/")):
            documented += 1
    return documented, total


def main():
    check = "--check" in sys.argv
    modules = sorted(d for d in os.listdir(SOURCES) if os.path.isdir(os.path.join(SOURCES, d)))
    long_files, long_funcs, docs, hub_argparse, helpers = [], [], {}, [], {k: [] for k in ONE_OF_EACH}
    for mod in modules:
        for path in swift_files(os.path.join(SOURCES, mod)):
            text = open(path, encoding="utf-8").read()
            rel = os.path.relpath(path, ROOT)
            n = text.count("\n")
            if n > MAX_FILE:
                long_files.append((rel, n))
            long_funcs += [(rel, name, k) for name, k in functions_over(text, MAX_FUNC)]
            if mod not in EXECUTABLES and mod not in SYSTEM and mod != "TestVectors":
                d, t = public_declarations(text)
                a, b = docs.get(mod, (0, 0))
                docs[mod] = (a + d, b + t)
            if (mod == "SettlementHub" or mod.startswith("Hub")) and re.search(r'^import ArgumentParser', text, re.M):
                hub_argparse.append(rel)
            for name, rx in ONE_OF_EACH.items():
                if rx.search(text):
                    helpers[name].append((mod, rel))
    documented = sum(d for d, _ in docs.values())
    total = sum(t for _, t in docs.values())
    share = documented / total if total else 1.0
    print(f"source files over {MAX_FILE} lines: {len(long_files)}")
    for rel, n in sorted(long_files, key=lambda x: -x[1]):
        print(f"  {n:5d}  {rel}")
    print(f"functions over {MAX_FUNC} lines: {len(long_funcs)}")
    for rel, name, k in sorted(long_funcs, key=lambda x: -x[2]):
        print(f"  {k:5d}  {rel}  {name}")
    print(f"public declarations with a doc comment: {documented} of {total} ({share:.0%}; target {DOC_TARGET:.0%})")
    for mod, (d, t) in sorted(docs.items()):
        if t:
            print(f"  {mod}: {d}/{t} ({d / t:.0%})")
    print(f"hub libraries importing ArgumentParser: {len(hub_argparse)} {hub_argparse}")
    for name, places in helpers.items():
        mods = sorted({m for m, _ in places})
        print(f"{name}: {len(places)} files in {len(mods)} modules ({', '.join(mods)})")
    missed = bool(long_files or long_funcs or share < DOC_TARGET or hub_argparse or any(len({m for m, _ in p}) > 1 for p in helpers.values()))
    if check and missed:
        print("shape: targets missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
