#!/usr/bin/env python3
"""benches/fixed_load.py — send an exact number of keep-alive HTTP/1.1 GETs.

Usage: fixed_load.py HOST:PORT TOTAL CONNECTIONS [TIMEOUT_S]

TOTAL requests are split evenly over CONNECTIONS keep-alive connections
(one thread each, one request in flight per connection).  Every response
must be a 200 with a Content-Length body (or chunked); anything else, a
reset or a stall longer than TIMEOUT_S (default 30) on one socket is an
error.  The whole run is also bounded by TOTAL * TIMEOUT_S / CONNECTIONS.
Prints "ok N" on success (N = responses read) and exits 0; otherwise
prints the failures and exits 1.

Made for callgrind runs (benches/callgrind_ab.sh), where the proxy is ~50x
slower than natively, so a time-based load generator (wrk -d) would not give
a fixed request count.  Loopback only: HOST must be 127.0.0.1.
"""
import socket
import sys
import threading


def read_response(sock, buf):
    """Read one response from sock; return (status, leftover buffer)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before headers")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed in body")
            rest += chunk
        return status, rest[length:]
    if chunked:
        while True:
            while b"\r\n" not in rest:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed in chunk size")
                rest += chunk
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed in chunk")
                rest += chunk
            rest = rest[size + 2:]
            if size == 0:
                return status, rest
    raise ValueError("response without length")


def worker(host, port, count, timeout, results, idx):
    req = ("GET / HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: fixed_load\r\n\r\n" % (host, port)).encode()
    ok = 0
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        for _ in range(count):
            sock.sendall(req)
            status, buf = read_response(sock, buf)
            if status != 200:
                raise ValueError("status %d" % status)
            ok += 1
        sock.close()
        results[idx] = (ok, None)
    except Exception as e:  # noqa: BLE001 - report every failure
        results[idx] = (ok, repr(e))


def main():
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    host, _, port = sys.argv[1].rpartition(":")
    if host != "127.0.0.1":
        print("fixed_load.py: loopback only (127.0.0.1)", file=sys.stderr)
        return 2
    port = int(port)
    total, conns = int(sys.argv[2]), int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) == 5 else 30.0
    per = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
    results = [None] * conns
    threads = [threading.Thread(target=worker, args=(host, port, per[i], timeout, results, i), daemon=True)
               for i in range(conns)]
    for t in threads:
        t.start()
    deadline = max(per) * timeout
    for t in threads:
        t.join(deadline)
    done = sum(r[0] for r in results if r)
    errors = ["connection %d: %s" % (i, "no result" if r is None else r[1])
              for i, r in enumerate(results) if r is None or r[1]]
    if any(t.is_alive() for t in threads):
        errors.append("overall deadline passed")
    if errors or done != total:
        print("failed: %d/%d responses; %s" % (done, total, errors))
        return 1
    print("ok %d" % done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
