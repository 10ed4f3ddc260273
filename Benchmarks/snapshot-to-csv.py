#!/usr/bin/env python3
"""Issue 11, install floor: the rows of a snapshot file as CSV files for sqlite3's .import
(person, card, usage; programs and devices are a handful). Untimed preparation."""
import csv, json, sys

src, out = sys.argv[1], sys.argv[2]
files = {t: open(f"{out}/{t}.csv", "w", newline="") for t in ("person", "card", "usage")}
writers = {t: csv.writer(f) for t, f in files.items()}
with open(src, encoding="utf-8") as f:
    for line in f:
        o = json.loads(line)
        t = o.get("type")
        if t == "person":
            writers[t].writerow([o["person_ref"], o["status"], o.get("status_reason", ""), "\x1f".join(o.get("programs", []))])
        elif t == "card":
            writers[t].writerow([o["card_number"], o["person_ref"], o["status"]])
        elif t == "usage":
            writers[t].writerow([o["person_ref"], o["program"], o["period"], o["used_fen"]])
for f in files.values():
    f.close()
