#!/usr/bin/env python3
"""The codebase's shape (issue 22): prints each figure against its target.

    python3 Tests/scripts/shape.py            # report
    python3 Tests/scripts/shape.py --check    # exit 1 when a target is missed

Figures (Sources/ only, generated and vendored code excluded):
- source files over 600 lines;
- functions over 80 lines (a `func`/`init` whose body's braces close more than 80 lines on);
- library modules whose public declarations carry a doc comment (`///` or `/** */` just above);
- library modules importing ArgumentParser among the hub's (SettlementHub and any Hub* module);
- places outside the contract module (KioskProtocol) that implement hex, RFC 3339, line
  reading or a JSON scanner, by their signatures;
- local targets depending on a target of the same or a higher layer in the README's module
  map, and targets whose dependencies in Package.swift differ from the map's.
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
    "hex": re.compile(r'"%02x"|"0123456789abcdef"|%02[xX]|func hex'),
    "rfc3339": re.compile(r'%04d-%02d-%02dT|ISO8601DateFormatter\(|ISO8601FormatStyle|func (isRFC3339|rfc3339)\b'),
    "line reading": re.compile(r'func (eachLine|readLines)\b|firstIndex\(of: (0x0A|UInt8\(ascii: "\\n"\))\)|memchr\([^)]*0x0A'),
    "JSON scanner": re.compile(r'func skipWhitespace|enum FlatJSON|struct JSONSpans|func utf8Sequence'),
}
CONTRACT = "KioskProtocol"


def package_dependencies():
    """{target: set of local targets it depends on}, read from Package.swift."""
    text = open(os.path.join(ROOT, "Package.swift"), encoding="utf-8").read()
    targets = text[text.index("targets: ["):]
    deps = {}
    for m in re.finditer(r'\.(?:target|executableTarget|systemLibrary|testTarget)\(\s*name: "([^"]+)"', targets):
        name = m.group(1)
        rest = targets[m.end():]
        nxt = re.search(r'\n        \.(?:target|executableTarget|systemLibrary|testTarget)\(', rest)
        body = rest[: nxt.start()] if nxt else rest
        d = re.search(r'dependencies: \[(.*?)\n?\s*\]', body, re.S)
        deps[name] = set(re.findall(r'^\s*"([^"]+)"|,\s*"([^"]+)"|\[\s*"([^"]+)"', d.group(1) if d else "", re.M)) if d else set()
        names = set()
        if d:
            for q in re.finditer(r'(?<!: )"([^"]+)"', d.group(1)):
                names.add(q.group(1))
        deps[name] = names
    local = set(deps)
    return {k: {x for x in v if x in local} for k, v in deps.items()}


def readme_map():
    """{target: (layer, set of dependencies)} from the README's module map block."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = text[text.index("## Module map"):]
    block = block[block.index("```") + 3:]
    block = block[: block.index("```")]
    out, layer, last = {}, None, None
    for line in block.split("\n"):
        m = re.match(r'^(layer (\d+)|programs)?\s+(\S+)\s*(?:->\s*(.*)|(.*))$', line)
        if not line.strip():
            continue
        if m and m.group(1):
            layer = 99 if m.group(1) == "programs" else int(m.group(2))
        if m and m.group(3) and not line.startswith(" " * 20):
            name = m.group(3).rstrip(",")
            deps = m.group(4)
            if layer == 0 and deps is None:
                for n in line.split()[2:] if line.startswith("layer") else line.split():
                    out[n] = (0, set())
                continue
            out[name] = (layer, set() if deps in (None, "(nothing)") else {x.strip() for x in deps.split(",") if x.strip()})
            last = name
        elif last:
            out[last][1].update(x.strip() for x in line.split(",") if x.strip())
    return out


def layering():
    """Problems: a dependency not below its target, or Package.swift and the map disagreeing."""
    problems = []
    deps, drawn = package_dependencies(), readme_map()
    for name, (layer, mapped) in sorted(drawn.items()):
        for d in mapped:
            if d in drawn and drawn[d][0] >= layer:
                problems.append(f"{name} (layer {layer}) depends on {d} (layer {drawn[d][0]})")
        if name in deps and deps[name] != mapped:
            problems.append(f"{name}: Package.swift {sorted(deps[name])} but the map {sorted(mapped)}")
    for name in sorted(deps):
        if name not in drawn and not name.endswith("Tests"):
            problems.append(f"{name}: not in the README's module map")
    return problems


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
                if mod != CONTRACT and rx.search(text):
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
        print(f"{name} outside {CONTRACT}: {len(places)} files {[rel for _, rel in places]}")
    layers = layering()
    print(f"module map problems: {len(layers)}")
    for p in layers:
        print(f"  {p}")
    missed = bool(long_files or long_funcs or share < DOC_TARGET or hub_argparse or layers or any(helpers.values()))
    if check and missed:
        print("shape: targets missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
