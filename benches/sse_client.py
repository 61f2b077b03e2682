#!/usr/bin/env python3
"""benches/sse_client.py — time to the first SSE event, N requests in a row.

Usage: sse_client.py HOST:PORT N HOLD_MS MODE OUTFILE [TIMEOUT_S]

Sends `GET /sse?hold_ms=HOLD_MS` (the bench upstream's event stream: one
event at once, the end of the stream HOLD_MS later) N times, one after the
other, over raw HTTP/1.1:
  MODE keepalive  all N over one keep-alive connection; the time runs from
                  just before the request is written;
  MODE fresh      a new connection per request, closed after the response;
                  the time runs from just before connect(), so it includes
                  the TCP handshake (and, behind a proxy, whatever the proxy
                  does for a new client connection).
The time stops when the first complete `data:` line of the body has been
read.  The rest of the response (chunked) is then read to its end before the
next request.  Each sample is written to OUTFILE in microseconds, one per
line.  Every socket read is bounded by TIMEOUT_S (default 10) and the whole
run by N * (TIMEOUT_S + HOLD_MS / 1000); any error, a non-200 answer, a body
that is not chunked or a missing `data:` line ends the run with exit 1.
Prints "ok N" on success.  Loopback only: HOST must be 127.0.0.1.
"""
import socket
import sys
import time


class Conn:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the peer")
        self.buf += chunk

    def read_until(self, marker):
        while marker not in self.buf:
            self.fill()
        head, _, self.buf = self.buf.partition(marker)
        return head

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def one(conn, request):
    """Send one request; return ns from now to the first complete data: line."""
    t0 = time.perf_counter_ns()
    conn.sock.sendall(request)
    head = conn.read_until(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    if status != 200:
        raise ValueError("status %d" % status)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    if b"chunked" not in headers.get(b"transfer-encoding", b""):
        raise ValueError("body not chunked (headers: %r)" % headers)
    first = None
    text = b""
    while True:
        size_line = conn.read_until(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            conn.read_until(b"\r\n")  # no trailers expected: the empty line
            break
        # Stop the clock as soon as the data: line is complete, even if the
        # rest of the chunk is still on its way.
        need = size
        while first is None:
            window = text + conn.buf[:need]
            at = window.find(b"data:")
            if at >= 0 and window.find(b"\n", at) >= 0:
                first = time.perf_counter_ns() - t0
                break
            if len(conn.buf) >= need:
                break
            conn.fill()
        data = conn.read_exact(size)
        conn.read_exact(2)
        if first is None:
            text += data
    if first is None:
        raise ValueError("no data: line in the stream")
    return first


def main():
    if len(sys.argv) not in (6, 7):
        print(__doc__, file=sys.stderr)
        return 2
    host, _, port = sys.argv[1].rpartition(":")
    if host != "127.0.0.1":
        print("sse_client.py: loopback only (127.0.0.1)", file=sys.stderr)
        return 2
    port = int(port)
    n, hold_ms, mode, outfile = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    timeout = float(sys.argv[6]) if len(sys.argv) == 7 else 10.0
    if mode not in ("keepalive", "fresh"):
        print("sse_client.py: MODE is keepalive or fresh", file=sys.stderr)
        return 2
    request = ("GET /sse?hold_ms=%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
               "User-Agent: sse_client\r\n\r\n" % (hold_ms, port)).encode()
    deadline = time.monotonic() + n * (timeout + hold_ms / 1000.0)
    samples = []
    conn = None
    try:
        for _ in range(n):
            if time.monotonic() > deadline:
                raise TimeoutError("overall deadline passed")
            if mode == "fresh":
                t0 = time.perf_counter_ns()
                conn = Conn(host, port, timeout)
                samples.append(time.perf_counter_ns() - t0 + one(conn, request))
                conn.sock.close()
                conn = None
            else:
                if conn is None:
                    conn = Conn(host, port, timeout)
                samples.append(one(conn, request))
    except Exception as e:  # noqa: BLE001 - report every failure
        print("failed after %d/%d: %r" % (len(samples), n, e))
        return 1
    finally:
        if conn is not None:
            conn.sock.close()
        with open(outfile, "w") as f:
            f.write("".join("%.1f\n" % (s / 1000.0) for s in samples))
    print("ok %d" % len(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
