#!/usr/bin/env python3
"""The hub's bare insert rate (issue 11, the drain's floor): the records a hub stored
(SOURCE, its hub_record rows) inserted into a fresh file DEST with the same table, indexes
and triggers, BATCH rows per durable transaction (WAL, synchronous=FULL), as a batch of
the upload is one transaction at the hub. No HTTP, no signatures, no checks. Prints one
line: floor hub_insert records=… seconds=… records_per_second=…
    hub-insert-floor.py SOURCE DEST BATCH"""
import sqlite3
import sys
import time

source, dest, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = sqlite3.connect(source)
schema = [r[0] for r in s.execute(
    "SELECT sql FROM sqlite_master WHERE tbl_name = 'hub_record' AND sql IS NOT NULL ORDER BY type = 'table' DESC")]
rows = s.execute("SELECT * FROM hub_record").fetchall()
if not rows:
    sys.exit("no hub_record rows in " + source)
d = sqlite3.connect(dest, isolation_level=None)
d.execute("PRAGMA journal_mode=WAL")
d.execute("PRAGMA synchronous=FULL")
for q in schema:
    d.execute(q)
insert = "INSERT INTO hub_record VALUES (%s)" % ",".join("?" * len(rows[0]))
t = time.perf_counter()
for i in range(0, len(rows), batch):
    d.execute("BEGIN")
    d.executemany(insert, rows[i:i + batch])
    d.execute("COMMIT")
elapsed = time.perf_counter() - t
print("floor hub_insert records=%d seconds=%.3f records_per_second=%.1f" % (len(rows), elapsed, len(rows) / elapsed))
