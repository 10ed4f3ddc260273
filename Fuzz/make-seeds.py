#!/usr/bin/env python3
"""Writes the seed corpora Fuzz/corpus/<target>/ from the test vectors in
Sources/TestVectors/Fixtures and a few hand-made cases. Run from the repository root;
re-running rewrites the seeds (files named seed-*), keeping any other files (regressions)."""
import hashlib, json, os, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Sources/TestVectors/Fixtures")
OUT = os.path.join(ROOT, "Fuzz/corpus")

def load(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return f.read()

seeds = {t: [] for t in ["tlv", "holder", "usage", "certificate", "snapshot", "batch", "bill", "escpos"]}
def add(target, data):
    if isinstance(data, str): data = data.encode()
    if data not in seeds[target]: seeds[target].append(data)

def tlv(tag, value):
    t = tag.to_bytes((tag.bit_length() + 7) // 8 or 1, "big")
    n = len(value)
    if n < 0x80: l = bytes([n])
    elif n <= 0xFF: l = bytes([0x81, n])
    else: l = bytes([0x82]) + n.to_bytes(2, "big")
    return t + l + value

cards = json.loads(load("cards.json"))
writes = json.loads(load("write-vectors.json"))
for c in cards["cards"] + cards["forgeries"]:
    f = c.get("files", {})
    for k in ("holder", "signature", "usage"):
        if k in f and f[k]:
            b = bytes.fromhex(f[k])
            add("tlv", b)
            if k == "holder": add("holder", b)
            if k == "usage": add("usage", b)
w = writes["write"]
add("certificate", bytes.fromhex(w["certificate"]))
add("tlv", bytes.fromhex(w["certificate"]))
add("usage", bytes.fromhex(w["usage_object"]))
for case in writes["cases"]:
    for k in ("stored_usage", "usage_after"):
        add("usage", bytes.fromhex(case[k]))
for case in writes["cases"]:
    for step in case["steps"]:
        apdu = bytes.fromhex(step["apdu"])
        if apdu[:4] == bytes.fromhex("002A00BE") and len(apdu) > 5:   # PSO VERIFY CERTIFICATE: the 7F21 object
            n = apdu[4]
            add("certificate", apdu[5:5 + n])
cert = bytes.fromhex(w["certificate"])
add("certificate", bytes([0x7F, 0x21, 0x82, 0x00, cert[3]]) + cert[4:])   # the same with a long length form
for s in w["apdus"][:3]:
    add("tlv", bytes.fromhex(s)[5:])     # the data field of each command APDU

# Hand-made BER-TLV: every length form, padding, 2- and 3-byte tags, nesting, truncation.
for b in ["7000", "7200", "700100", "7081020102", "708200020102", "70830000020102", "DF2100", "DF8121020102",
          "00FF7001AAFF00", "E10ADF4701410DF420400000001", "7F21037F2100", "5F2001", "1F", "70808000",
          "700A7008700670047002700000"]:
    add("tlv", bytes.fromhex(b.replace(" ", "")) if len(b) % 2 == 0 else bytes.fromhex(b + "0"))
# A holder made from the vector's fields, with padding after it.
add("holder", bytes.fromhex(cards["cards"][0]["files"]["holder"]) + b"\x00" * 8 + b"\xff" * 4)
add("holder", tlv(0x70, tlv(0xDF21, b"3307820000000017")))

# Snapshots: the fixture (full), a delta on the fuzz store's base, hand-made broken files.
snap = load("snapshot-small.jsonl")
add("snapshot", snap)
lines = snap.split(b"\n")
add("snapshot", b"\n".join(lines[:6] + [lines[-2]]) + b"\n")
delta_header = json.loads(lines[0])
delta_header.update(kind="delta", snapshot_id="330782-20261122-02", base_snapshot_id="330782-20261101-01")
person = [l for l in lines if b'"type":"person"' in l][:1]
card = [l for l in lines if b'"type":"card"' in l][:1]
usage = [l for l in lines if b'"type":"usage"' in l][:1]
body = [json.dumps(delta_header, separators=(",", ":"), ensure_ascii=False).encode()] + person + card + usage + [
    b'{"type":"person","op":"delete","person_ref":"997bb21c2fd71da3a74ad22ada8a3d3e"}',
    b'{"type":"card","op":"delete","card_number":"3307820000000017"}',
    b'{"type":"program","op":"delete","code":"HM-SUBSIDY"}',
    b'{"type":"device","op":"delete","device_id":"KSK-TEST-0001"}',
    b'{"type":"usage","op":"delete","person_ref":"997bb21c2fd71da3a74ad22ada8a3d3e","program":"HM-SUBSIDY","period":"2026"}',
    b'{"type":"future_kind","x":1}']
digest = hashlib.sha256(b"".join(l + b"\n" for l in body)).hexdigest()
trailer = json.dumps({"type": "trailer", "records": len(body) - 1, "sha256": digest, "signature": "AAAA"}).encode()
add("snapshot", b"\n".join(body + [trailer]) + b"\n")
add("snapshot", lines[0] + b"\n")
add("snapshot", b'{"type":"header"}\n{"type":"trailer","records":0,"sha256":"","signature":""}')

# Batches: the three fixture bodies, and an envelope with an empty records list.
rb = json.loads(load("receipt-and-batch.json"))
for k in ("batch_body", "reversal_batch_body", "two_program_batch_body"):
    add("batch", rb[k])
add("batch", '{"batch_id":"b","device_id":"KSK-TEST-0001","sent_at":"2026-11-22T03:00:00Z","records":[]}')
add("batch", '{"batch_id":"b","device_id":"KSK-TEST-0001","sent_at":"2026-11-22T03:00:00.5+08:00","records":[{"record_id":"KSK-TEST-0001-7","kind":"x\\u00e9"}]}')

# Bill API bodies.
for b in ['{"bill_reference":"HIS-2026-000123","bill_fen":10000}', '{"bill_fen":1,"bill_reference":"A"}',
          '{"bill_reference":"X","bill_fen":1.0}', '{"bill_reference":"X","bill_fen":1e3}', '{"bill_reference":"\\u0041","bill_fen":99999999}',
          '[1]', '{"bill_reference":"X","bill_fen":1,"extra":null}']:
    add("bill", b)

# ESC/POS, as Receipts.ESCPOS writes it: init, Chinese mode, a centered bold title, lines in
# GB18030, a small raster, feeds and a cut; and a few single commands.
def gb(s): return s.encode("gb18030")
doc = bytes([0x1B, 0x40, 0x1C, 0x26, 0x1B, 0x61, 0x01, 0x1B, 0x45, 0x01, 0x1D, 0x21, 0x11]) + gb("惠民医疗费用贴补") + b"\n"
doc += bytes([0x1D, 0x21, 0x00, 0x1B, 0x45, 0x00, 0x1B, 0x61, 0x00]) + gb("卡号 3307********0017") + b"\n" + gb("贴补 100.00 元") + b"\n"
doc += bytes([0x1B, 0x64, 0x01, 0x1D, 0x76, 0x30, 0x00, 0x02, 0x00, 0x03, 0x00]) + bytes([0xF0, 0x0F, 0xAA, 0x55, 0xFF, 0x00])
doc += bytes([0x1B, 0x64, 0x04, 0x1D, 0x56, 0x42, 0x00])
add("escpos", doc)
add("escpos", bytes([0x1B, 0x40]) + b"ASCII only\n" + bytes([0x1B, 0x33, 0x18, 0x1B, 0x32, 0x1C, 0x2E, 0x1D, 0x56, 0x00]))
add("escpos", bytes([0x1C, 0x26]) + gb("𠀀€") + b"\n")   # four-byte GB18030

total = 0
for target, items in seeds.items():
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if name.startswith("seed-"): os.remove(os.path.join(d, name))
    for i, data in enumerate(items):
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f: f.write(data)
        total += len(data)
    print("%-12s %3d seeds %7d bytes" % (target, len(items), sum(map(len, items))))
print("total %d bytes" % total)
