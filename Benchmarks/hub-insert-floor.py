#!/usr/bin/env python3
"""The hub's bare insert rate (issue 11, the drain's floor): the records a hub stored
(SOURCE: its hub_answer and hub_record rows, and a hub_batch row per batch) inserted into
a fresh file DEST with the same tables, indexes and triggers, foreign keys on, BATCH
records per durable transaction (WAL, synchronous=FULL), as a batch of the upload is one
transaction at the hub. No HTTP, no signatures, no checks. Prints one
line: floor hub_insert records=… seconds=… records_per_second=…
    hub-insert-floor.py SOURCE DEST BATCH [--verify SNAPSHOT]

--verify SNAPSHOT: the floor that also does the spec's own work (issue 24): before each
batch's transaction, every subsidy's card acknowledgement (card spec §5.4) is verified with
its card's key from SNAPSHOT (Ed25519 in OpenSSL through `cryptography`), spread over two
worker processes as the hub spreads them over the cores; the messages are made before the
clock starts. Prints "floor hub_insert_verify …" and the verifications counted."""
import multiprocessing
import sqlite3
import sys
import time

source, dest, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
snapshot = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--verify" else None
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
checks = None
if snapshot:
    import base64
    import json
    keys = {}
    for line in open(snapshot, encoding="utf-8"):
        o = json.loads(line)
        if o.get("type") == "card" and o.get("public_key"):
            keys[o["card_number"]] = base64.b64decode(o["public_key"])
    body_at = [c[1] for c in s.execute("PRAGMA table_info(hub_record)")].index("body")
    checks = []
    for r in rows:
        b = json.loads(r[body_at])
        if b.get("kind") != "medical_subsidy":
            checks.append(None)
            continue
        message = (b"USAGE-ACK-V2" + b["card_number"].encode() + b["card_sequence"].to_bytes(4, "big")
                   + bytes.fromhex(b["card_challenge"]))
        checks.append((keys[b["card_number"]], base64.b64decode(b["card_ack"]), message))


def verify(span):
    """Verifies checks[span[0]:span[1]] (the workers were forked with them: only the span
    travels); raises when one does not verify."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    n = 0
    for c in checks[span[0]:span[1]]:
        if c:
            Ed25519PublicKey.from_public_bytes(c[0]).verify(c[1], c[2])
            n += 1
    return n


pool = multiprocessing.get_context("fork").Pool(2) if checks is not None else None
if pool:
    pool.map(verify, [(0, 2), (2, 4)], chunksize=1)  # the workers started before the clock
verified = 0
t = time.perf_counter()
for i in range(0, len(rows), batch):
    if pool:
        end = min(i + batch, len(rows))
        middle = (i + end) // 2
        verified += sum(pool.map(verify, [(i, middle), (middle, end)], chunksize=1))
    d.execute("BEGIN")
    d.executemany(insert_answer, answer_rows[i:i + batch])
    d.executemany(insert, rows[i:i + batch])
    d.execute(insert_batch, batch_row[1:])
    d.execute("COMMIT")
elapsed = time.perf_counter() - t
if pool:
    pool.close()
    print("floor hub_insert_verify records=%d verified=%d seconds=%.3f records_per_second=%.1f"
          % (len(rows), verified, elapsed, len(rows) / elapsed))
else:
    print("floor hub_insert records=%d seconds=%.3f records_per_second=%.1f" % (len(rows), elapsed, len(rows) / elapsed))
