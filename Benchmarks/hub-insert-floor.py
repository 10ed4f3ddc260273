#!/usr/bin/env python3
"""The hub's bare insert rate (issue 11, the drain's floor): the records a hub stored
(SOURCE: its hub_answer and hub_record rows, and a hub_batch row per batch) inserted into
a fresh file DEST with the same tables, indexes and triggers, foreign keys on, BATCH
records per durable transaction (WAL, synchronous=FULL), as a batch of the upload is one
transaction at the hub. No HTTP, no signatures, no checks. Prints one
line: floor hub_insert records=… seconds=… records_per_second=…
    hub-insert-floor.py SOURCE DEST BATCH"""
import sqlite3
import sys
import time

source, dest, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = sqlite3.connect(source)
tables = ("hub_answer", "hub_record", "hub_batch")
schema = [r[0] for r in s.execute(
    "SELECT sql FROM sqlite_master WHERE tbl_name IN (?, ?, ?) AND sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
    "ORDER BY tbl_name = 'hub_record', type = 'table' DESC", tables)]
rows = s.execute("SELECT * FROM hub_record ORDER BY device_id, seq").fetchall()
if not rows:
    sys.exit("no hub_record rows in " + source)
answers = dict((r[0], r) for r in s.execute("SELECT * FROM hub_answer"))
answer_rows = [answers[r[0]] for r in rows]
batch_row = s.execute("SELECT * FROM hub_batch LIMIT 1").fetchone()
d = sqlite3.connect(dest, isolation_level=None)
d.execute("PRAGMA journal_mode=WAL")
d.execute("PRAGMA synchronous=FULL")
d.execute("PRAGMA foreign_keys=ON")
for q in schema:
    d.execute(q)
insert = "INSERT INTO hub_record VALUES (%s)" % ",".join("?" * len(rows[0]))
insert_answer = "INSERT INTO hub_answer VALUES (%s)" % ",".join("?" * len(answer_rows[0]))
insert_batch = "INSERT INTO hub_batch VALUES (NULL, %s)" % ",".join("?" * (len(batch_row) - 1))
t = time.perf_counter()
for i in range(0, len(rows), batch):
    d.execute("BEGIN")
    d.executemany(insert_answer, answer_rows[i:i + batch])
    d.executemany(insert, rows[i:i + batch])
    d.execute(insert_batch, batch_row[1:])
    d.execute("COMMIT")
elapsed = time.perf_counter() - t
print("floor hub_insert records=%d seconds=%.3f records_per_second=%.1f" % (len(rows), elapsed, len(rows) / elapsed))
