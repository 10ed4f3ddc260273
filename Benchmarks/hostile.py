#!/usr/bin/env python3
"""Hostile clients against a hub (issue 21 item 3), for Benchmarks/hub-hostile.sh.

Holds N connections to HOST:PORT for SECONDS, a third of each kind, each reopened when the hub
drops it (a persistent attacker): silent (connect and say nothing), slowloris (a request head
trickled a byte every 5 s) and slow body (a registered device's batch path, Content-Length
8 MiB, a byte every 5 s). Prints one line: how many connections were opened and how many the
hub dropped."""
import selectors, socket, sys, time

host, port, n, seconds, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
sel = selectors.DefaultSelector()
opened = dropped = 0
conns = {}   # socket -> [kind, payload, position, next_send]

def payload(kind):
    if kind == 0:
        return b""
    if kind == 1:
        return b"GET /v1/health HTTP/1.1\r\nHost: hub\r\nX-Padding: " + b"a" * 4000
    return (b"POST /v1/devices/" + device.encode() + b"/batches HTTP/1.1\r\nHost: hub\r\nContent-Length: 8388608\r\n"
            b"X-Signature: AAAA\r\n\r\n" + b"{" * 100000)

def open_one(kind):
    global opened
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((host, port))
    sel.register(s, selectors.EVENT_READ)
    conns[s] = [kind, payload(kind), 0, time.monotonic()]
    opened += 1

for i in range(n):
    open_one(i % 3)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for key, _ in sel.select(timeout=0.5):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b""
        if not data:
            kind = conns.pop(s)[0]
            sel.unregister(s)
            s.close()
            dropped += 1
            open_one(kind)
    now = time.monotonic()
    for s, c in list(conns.items()):
        kind, body, pos, due = c
        if kind and now >= due and pos < len(body):
            # The head at once up to its last line for a slow body; otherwise a byte every 5 s.
            step = body.index(b"\r\n\r\n") + 4 if kind == 2 and pos == 0 else 1
            try:
                s.send(body[pos:pos + step])
                c[2] = pos + step
            except OSError:
                pass
            c[3] = now + 5
print(f"hostile opened={opened} dropped_by_hub={dropped}")
