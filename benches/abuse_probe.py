#!/usr/bin/env python3
"""Hostile-client probes for benches/abuse.sh. Standard library only; loopback only.

Every loop is bounded in count and in time.

  abuse_probe.py hold ADDR COUNT MODE SECONDS
      Opens COUNT connections to ADDR (127.0.0.1:PORT) and watches them for at most
      SECONDS. MODE: silent (never send a byte), h2 (HTTP/2 preface + SETTINGS, then
      nothing), slowloris (an HTTP/1.1 head, one byte per second, never finished).
      Prints one JSON line: opened, closed, held, connect_s (time to open them all),
      first_close_s, last_close_s.
  abuse_probe.py idle ADDR COUNT SECONDS READY_FILE
      Opens COUNT connections, sends one GET on each and reads its answer (so the
      connection is a served keep-alive one), writes READY_FILE, then holds them idle
      for at most SECONDS or until READY_FILE is removed. Prints a JSON line.
"""
import json
import os
import selectors
import socket
import sys
import time

H2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HEAD = b"GET / HTTP/1.1\r\nhost: probe\r\nuser-agent: slowloris\r\nx-pad: " + b"a" * 4096


def parse(addr):
    host, port = addr.rsplit(":", 1)
    assert host == "127.0.0.1", "loopback only"
    return host, int(port)


def open_many(addr, count, deadline):
    socks = []
    t0 = time.monotonic()
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            s.connect(addr)
        except OSError:
            s.close()
            break
        s.setblocking(False)
        socks.append(s)
    return socks, time.monotonic() - t0


def hold(addr, count, mode, seconds):
    addr = parse(addr)
    start = time.monotonic()
    deadline = start + seconds
    socks, connect_s = open_many(addr, count, deadline)
    if mode == "h2":
        for s in socks:
            try:
                s.send(H2)
            except OSError:
                pass
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    open_set = set(socks)
    closes = []
    sent = 0
    next_byte = time.monotonic()
    while open_set and time.monotonic() < deadline:
        now = time.monotonic()
        if mode == "slowloris" and now >= next_byte and sent < len(HEAD):
            for s in list(open_set):
                try:
                    s.send(HEAD[sent:sent + 1])
                except OSError:
                    pass
            sent += 1
            next_byte = now + 1.0
        for key, _ in sel.select(timeout=min(0.5, max(0.0, deadline - now))):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                open_set.discard(s)
                s.close()
                closes.append(time.monotonic() - start)
    result = {
        "mode": mode,
        "opened": len(socks),
        "closed": len(closes),
        "held": len(open_set),
        "connect_s": round(connect_s, 3),
        "first_close_s": round(min(closes), 1) if closes else None,
        "last_close_s": round(max(closes), 1) if closes else None,
        "watched_s": round(time.monotonic() - start, 1),
    }
    for s in open_set:
        s.close()
    print(json.dumps(result), flush=True)


def idle(addr, count, seconds, ready_file):
    addr = parse(addr)
    start = time.monotonic()
    deadline = start + seconds
    socks, connect_s = open_many(addr, count, deadline)
    served = 0
    for s in socks:
        s.setblocking(True)
        s.settimeout(10)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nhost: probe\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got and len(got) < 65536:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            if got.startswith(b"HTTP/1.1 200"):
                served += 1
        except OSError:
            pass
    with open(ready_file, "w") as f:
        f.write(str(served))
    while os.path.exists(ready_file) and time.monotonic() < deadline:
        time.sleep(0.2)
    for s in socks:
        s.close()
    print(json.dumps({"opened": len(socks), "served": served, "connect_s": round(connect_s, 3)}), flush=True)


def main():
    cmd = sys.argv[1]
    if cmd == "hold":
        hold(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    elif cmd == "idle":
        idle(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
